"""Idempotency-Key on SendSms and MakeCall (in-memory store; Azurite in test_state_e2e)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import azure.functions as func
import pytest

from shared import clock, idempotency
from shared.idempotency import request_fingerprint
from shared.memory_store import MemoryStore
from shared.reconcile import content_digest
from shared.settings import get_settings
from shared.state import get_store
from shared.store import Attempt, IdempotencyRecord, StoredResponse
from tests.conftest import (
    PUBLIC_BASE_URL,
    ROOT,
    VALID_FROM,
    VALID_TO,
    FakeClock,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
)

SMS_URL = f"{PUBLIC_BASE_URL}/api/SendSms"


@pytest.fixture
def send_sms(functions: dict[str, Handler], app_env: SetEnv) -> Handler:
    return functions["SendSms"]


def send(
    handler: Handler, payload: Any, key: str | None = "key-1", **headers: str
) -> func.HttpResponse:
    all_headers = {**headers, **({"Idempotency-Key": key} if key is not None else {})}
    return handler(build_request("POST", SMS_URL, json_body=payload, headers=all_headers))


def test_same_key_same_body_sends_once_and_replays_the_answer(
    send_sms: Handler, sandbox: Sandbox
) -> None:
    first = send(send_sms, {"to": VALID_TO, "body": "once"})
    second = send(send_sms, {"body": "once", "to": VALID_TO})  # same request, other key order
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.get_body() == first.get_body()
    assert second.mimetype == "application/json"
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(sandbox.messages()) == 1


def test_same_key_other_body_is_422(send_sms: Handler, sandbox: Sandbox) -> None:
    send(send_sms, {"to": VALID_TO, "body": "once"})
    response = send(send_sms, {"to": VALID_TO, "body": "twice"})
    assert (response.status_code, body_of(response)) == (
        422,
        {
            "type": "urn:twilio-functions:problem:idempotency",
            "title": "Idempotency-Key reused",
            "status": 422,
            "detail": "This Idempotency-Key was used with a different request.",
            "rule": "idempotency-key",
        },
    )
    assert len(sandbox.messages()) == 1


def claim_elsewhere(payload: dict[str, Any], key: str = "key-1") -> Attempt:
    """The first request's claim, as if it were running (or had crashed) in another
    process: what it recorded before calling Twilio."""
    attempt = Attempt(
        "message", payload["to"], VALID_FROM, content_digest(payload["body"]), clock.now(),
        owner="elsewhere",
    )  # fmt: skip
    idempotency.claim(
        get_store(get_settings()), "ip:unknown|SendSms", key, request_fingerprint(payload),
        attempt, clock.now(),
    )  # fmt: skip
    return attempt


def test_in_flight_duplicate_is_409_with_retry_after(
    send_sms: Handler, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    claim_elsewhere({"to": VALID_TO, "body": "x"})
    response = send(send_sms, {"to": VALID_TO, "body": "x"})
    assert (response.status_code, response.headers["Retry-After"], body_of(response)) == (
        409, "1",
        {
            "type": "urn:twilio-functions:problem:idempotency",
            "title": "Request in progress",
            "status": 409,
            "detail": "A request with this Idempotency-Key is still being processed.",
            "rule": "idempotency-key",
        },
    )  # fmt: skip
    assert sandbox.requests() == []


def test_keys_are_per_caller(send_sms: Handler, sandbox: Sandbox) -> None:
    send(send_sms, {"to": VALID_TO, "body": "x"}, **{"X-Forwarded-For": "203.0.113.1:1"})
    send(send_sms, {"to": VALID_TO, "body": "x"}, **{"X-Forwarded-For": "203.0.113.2:1"})
    assert len(sandbox.messages()) == 2


def test_refusals_are_replayed_too(send_sms: Handler, sandbox: Sandbox) -> None:
    assert send(send_sms, {"to": "+15005550001", "body": "x"}).status_code == 422
    replay = send(send_sms, {"to": "+15005550001", "body": "x"})
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (422, "true")
    assert len(sandbox.requests()) == 1


def test_nothing_sent_releases_the_key(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_RATE_LIMIT_RETRIES="0")
    limited = send(send_sms, {"to": "+15005550428", "body": "x"})  # Twilio answers 429 once
    assert (limited.status_code, body_of(limited)["title"]) == (503, "Twilio is rate limiting us")
    retry = send(send_sms, {"to": "+15005550428", "body": "x"})
    assert (retry.status_code, "Idempotent-Replayed" in retry.headers) == (201, False)
    assert len(sandbox.messages()) == 1


def test_a_timeout_is_found_at_twilio_once_it_lands_never_sent_twice(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    app_env(TWILIO_TIMEOUT_SECONDS="0.3")
    payload = {"to": "+15005550504", "body": "slow"}  # created 2 s after its request
    first = send(send_sms, payload)
    assert (first.status_code, body_of(first)["outcome"]) == (504, "unknown")
    # Not at Twilio yet, and Twilio may still take it: wait, do not send.
    early = send(send_sms, payload)
    assert (early.status_code, early.headers["Retry-After"]) == (409, "21")  # 0.3 s + 20 s
    fake_clock.advance(25)
    time.sleep(2.5)  # the sandbox creates it now, as Twilio finishes a slow request
    late = send(send_sms, payload)
    [message] = sandbox.messages()
    assert (late.status_code, late.headers["Idempotent-Replayed"], body_of(late)["sid"]) == (
        201, "true", message["sid"],
    )  # fmt: skip
    replay = send(send_sms, payload)
    assert (replay.status_code, replay.get_body()) == (201, late.get_body())
    assert len(sandbox.messages()) == 1


@pytest.mark.parametrize(
    ("to", "status", "title"),
    [
        ("+15005550501", 502, "Twilio failed"),  # created, then Twilio answered 500
        ("+15005550502", 502, "Twilio connection lost"),  # created, then the connection reset
    ],
)
def test_a_lost_answer_is_found_at_twilio_and_never_sent_twice(
    send_sms: Handler, sandbox: Sandbox, fake_clock: FakeClock, to: str, status: int, title: str
) -> None:
    payload = {"to": to, "body": "exactly once"}
    first = send(send_sms, payload)
    body = body_of(first)
    assert (first.status_code, body["title"], body["outcome"]) == (status, title, "unknown")
    assert "may have been sent" in body["detail"]
    answers = [send(send_sms, payload) for _ in range(3)]
    [message] = sandbox.messages()
    assert {(a.status_code, body_of(a)["sid"]) for a in answers} == {(201, message["sid"])}
    assert len(sandbox.messages()) == 1  # however many retries


def test_an_answer_lost_before_twilio_got_anything_is_sent_once_twilio_provably_has_none(
    send_sms: Handler, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    payload = {"to": "+15005550500", "body": "x"}  # Twilio 500, nothing created
    assert send(send_sms, payload).status_code == 502
    waiting = send(send_sms, payload)
    assert (waiting.status_code, waiting.headers["Retry-After"]) == (409, "30")  # 10 s + 20 s
    assert len(sandbox.requests()) == 2  # the create and one lookup
    fake_clock.advance(30)
    again = send(send_sms, payload)  # nothing found at Twilio: sent again (and 500 again)
    assert (again.status_code, body_of(again)["outcome"]) == (502, "unknown")
    creates = [r for r in sandbox.requests() if r["method"] == "POST"]
    assert len(creates) == 2 and sandbox.messages() == []


def test_a_crash_after_twilio_accepted_is_found_not_sent_again(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox, fake_clock: FakeClock,
    twilio_client: Any,
) -> None:  # fmt: skip
    payload = {"to": VALID_TO, "body": "crashed"}
    attempt = claim_elsewhere(payload)
    created = twilio_client.messages.create(to=VALID_TO, from_=VALID_FROM, body="crashed")
    # The process died before it settled the key: while its lease might still be held, a
    # retry finds the message at Twilio once the attempt has outlived a normal request.
    fake_clock.advance(16)
    found = send(send_sms, payload)
    assert (found.status_code, body_of(found)["sid"]) == (201, created.sid)
    assert len(sandbox.messages()) == 1
    assert attempt.owner == "elsewhere"


def test_a_crash_before_twilio_was_asked_is_sent_when_the_lease_runs_out(
    send_sms: Handler, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    payload = {"to": VALID_TO, "body": "never reached Twilio"}
    claim_elsewhere(payload)
    fake_clock.advance(16)
    waiting = send(send_sms, payload)  # Twilio has none, but the holder may be alive
    assert (waiting.status_code, waiting.headers["Retry-After"]) == (409, str(150 - 16))
    fake_clock.advance(150 - 16)
    sent = send(send_sms, payload)
    assert sent.status_code == 201
    [message] = sandbox.messages()
    assert message["body"] == "never reached Twilio"


def test_a_message_another_key_sent_is_not_taken_for_ours(
    send_sms: Handler, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    payload = {"to": VALID_TO, "body": "same words"}
    other = send(send_sms, payload, key="other-key")  # recorded as that key's own
    claim_elsewhere(payload)  # ours crashed before reaching Twilio
    fake_clock.advance(151)
    ours = send(send_sms, payload)
    assert ours.status_code == 201
    assert body_of(ours)["sid"] != body_of(other)["sid"]
    assert len(sandbox.messages()) == 2


def test_without_a_key_a_lost_answer_cannot_be_checked(send_sms: Handler, sandbox: Sandbox) -> None:
    first = send(send_sms, {"to": "+15005550501", "body": "x"}, key=None)
    assert (first.status_code, body_of(first)["outcome"]) == (502, "unknown")
    send(send_sms, {"to": "+15005550501", "body": "x"}, key=None)
    assert len(sandbox.messages()) == 2  # what the API docs warn of


def test_the_lease_follows_the_function_timeout() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    assert hours * 3600 + minutes * 60 + seconds == idempotency.FUNCTION_TIMEOUT_SECONDS
    assert idempotency.LEASE_SECONDS == idempotency.FUNCTION_TIMEOUT_SECONDS + 30


def test_validation_errors_do_not_use_the_key(send_sms: Handler, sandbox: Sandbox) -> None:
    invalid = send(send_sms, {"to": "nope", "body": "x"})
    assert (invalid.status_code, body_of(invalid)["type"]) == (
        400, "urn:twilio-functions:problem:validation"
    )  # fmt: skip
    assert send(send_sms, {"to": VALID_TO, "body": "x"}).status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\tkey"])
def test_malformed_keys_are_400(send_sms: Handler, sandbox: Sandbox, key: str) -> None:
    response = send(send_sms, {"to": VALID_TO, "body": "x"}, key=key)
    assert (response.status_code, body_of(response)) == (
        400,
        {
            "type": "urn:twilio-functions:problem:idempotency",
            "title": "Bad Request",
            "status": 400,
            "detail": "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            "rule": "idempotency-key",
        },
    )
    assert sandbox.requests() == []


@pytest.mark.parametrize("key", ["x" * 255, "k", "~ !"])
def test_keys_of_1_to_255_printable_characters_are_used(
    send_sms: Handler, sandbox: Sandbox, key: str
) -> None:
    assert send(send_sms, {"to": VALID_TO, "body": "x"}, key=key).status_code == 201
    replay = send(send_sms, {"to": VALID_TO, "body": "x"}, key=key)
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert len(sandbox.messages()) == 1


def test_our_own_429_is_not_kept_under_the_key(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    app_env(LIMIT_PER_CALLER="1/minute")
    assert send(send_sms, {"to": VALID_TO, "body": "a"}, key="a").status_code == 201
    refused = send(send_sms, {"to": VALID_TO, "body": "b"}, key="b")
    assert (refused.status_code, body_of(refused)["rule"]) == (429, "limit")
    fake_clock.advance(61)  # the limit has room again: the key sends, it replays no 429
    retry = send(send_sms, {"to": VALID_TO, "body": "b"}, key="b")
    assert (retry.status_code, "Idempotent-Replayed" in retry.headers) == (201, False)
    assert len(sandbox.messages()) == 2


def test_without_the_header_every_request_sends(send_sms: Handler, sandbox: Sandbox) -> None:
    send(send_sms, {"to": VALID_TO, "body": "x"}, key=None)
    send(send_sms, {"to": VALID_TO, "body": "x"}, key=None)
    assert len(sandbox.messages()) == 2


def test_make_call_honours_the_key(
    functions: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox
) -> None:
    def call(to: str = VALID_TO) -> func.HttpResponse:
        return functions["MakeCall"](
            build_request(
                "POST",
                f"{PUBLIC_BASE_URL}/api/MakeCall",
                json_body={"to": to},
                headers={"Idempotency-Key": f"c-{to}"},
            )
        )

    assert call().get_body() == call().get_body()
    assert len(sandbox.calls()) == 1
    # A call whose answer was lost is found at Twilio, like a message.
    assert call("+15005550502").status_code == 502
    found = call("+15005550502")
    lost = [c for c in sandbox.calls() if c["to"] == "+15005550502"]
    assert (found.status_code, body_of(found)["sid"], len(lost)) == (201, lost[0]["sid"], 1)


def stored(store: MemoryStore) -> IdempotencyRecord | None:
    return store.update_key("s", "k", lambda record: None).record


def test_only_one_retry_takes_over_an_attempt_whose_outcome_was_lost() -> None:
    store, now = MemoryStore(), 1_800_000_000.0
    prior = Attempt("message", VALID_TO, VALID_FROM, "d", now, owner="o")
    retry = replace(prior, started_at=now + 100)
    other = replace(prior, started_at=now + 101)
    assert idempotency._take_over(store, "s", "k", prior, retry) is None  # no such key
    idempotency.claim(store, "s", "k", "f", prior, now)
    store.update_key("s", "k", lambda record: replace(record, unknown=True) if record else None)
    taken = idempotency._take_over(store, "s", "k", prior, retry)
    assert taken is not None and taken.record is not None
    assert taken.record == IdempotencyRecord(
        "f", now + idempotency.KEY_TTL_SECONDS, now + 100 + idempotency.LEASE_SECONDS,
        attempt=retry, unknown=False,
    )  # fmt: skip
    assert stored(store) == taken.record
    # A second retry that read the same prior attempt lost the race: it changes nothing.
    assert idempotency._take_over(store, "s", "k", prior, other) is None
    assert stored(store) == taken.record


def test_an_answered_key_is_not_taken_over() -> None:
    store, now = MemoryStore(), 1_800_000_000.0
    prior = Attempt("message", VALID_TO, VALID_FROM, "d", now, owner="o")
    idempotency.claim(store, "s", "k", "f", prior, now)
    answer = StoredResponse(201, "{}", "application/json")
    store.update_key("s", "k", lambda record: replace(record, response=answer) if record else None)
    before = stored(store)
    assert (
        idempotency._take_over(store, "s", "k", prior, replace(prior, started_at=now + 1)) is None
    )
    assert stored(store) == before
