"""Idempotency-Key on SendSms and MakeCall (in-memory store; Azurite in test_state_e2e)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import azure.functions as func
import pytest

from shared import clock, idempotency, twilio_errors
from shared.errors import AppError
from shared.idempotency import Creation, request_fingerprint
from shared.memory_store import MemoryStore
from shared.reconcile import content_digest
from shared.settings import Settings, get_settings, load_settings
from shared.state import get_store
from shared.store import (
    Accepted,
    Attempt,
    IdempotencyRecord,
    Store,
    StoredResponse,
    StoreUnavailable,
    Versioned,
)
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


# once(), settle() and idempotent() on their own: a scripted Twilio, a store in memory that
# lists its round trips, and exact answers, records, waits and log lines.

SCOPE, KEY, FP = "caller|SendSms", "key-1", "fingerprint"
OWNER = hashlib.sha256(f"{SCOPE}\n{KEY}".encode()).hexdigest()[:32]
T0 = 1_800_000_000.0
TTL, LEASE = idempotency.KEY_TTL_SECONDS, idempotency.LEASE_SECONDS
# What a route asks for; started_at and owner are placeholders, filled in per attempt.
INTENT = Attempt("message", VALID_TO, VALID_FROM, "digest", -1.0, "per attempt")
ATTEMPT = replace(INTENT, started_at=T0, owner=OWNER)
CLAIMED = IdempotencyRecord(FP, T0 + TTL, T0 + LEASE, attempt=ATTEMPT)
SETTINGS = load_settings({})  # Twilio's timeout: 10 s
STILL_RUNNING = "A request with this Idempotency-Key is still being processed."


def created(sid: str) -> StoredResponse:
    return StoredResponse(201, json.dumps({"sid": sid}), "application/json")


class CountingStore(MemoryStore):
    """A store in memory that lists its key round trips, and the threads writes ran on."""

    def __init__(self, remote: bool = False) -> None:
        super().__init__()
        self.remote = remote
        self.trips: list[str] = []
        self.writers: list[str] = []

    def update_key(
        self,
        scope: str,
        key: str,
        change: Callable[[IdempotencyRecord | None], IdempotencyRecord | None],
    ) -> Versioned:
        self.trips.append("update_key")
        return super().update_key(scope, key, change)

    def replace_key(self, scope: str, key: str, record: IdempotencyRecord, version: str) -> bool:
        self.trips.append("replace_key")
        self.writers.append(threading.current_thread().name)
        return super().replace_key(scope, key, record, version)

    def key(self) -> IdempotencyRecord | None:
        """What the key holds now (not counted as a trip)."""
        return MemoryStore.update_key(self, SCOPE, KEY, lambda record: None).record

    def claimed_elsewhere(self, attempt: Attempt = ATTEMPT) -> Versioned:
        """The key as another process's attempt claimed it; trips start from here."""
        held = idempotency.claim(self, SCOPE, KEY, FP, attempt, attempt.started_at)[2]
        self.trips.clear()
        return held


class KeysDown(CountingStore):
    """A store whose keys cannot be reached."""

    def update_key(
        self,
        scope: str,
        key: str,
        change: Callable[[IdempotencyRecord | None], IdempotencyRecord | None],
    ) -> Versioned:
        raise StoreUnavailable()


class Failed(Exception):
    """A create that failed with this outcome."""

    def __init__(self, outcome: twilio_errors.Outcome) -> None:
        super().__init__(outcome)
        self.outcome: twilio_errors.Outcome = outcome


def failure(exc: Exception) -> tuple[StoredResponse, twilio_errors.Outcome]:
    assert isinstance(exc, Failed)
    answer = StoredResponse(502, json.dumps({"outcome": exc.outcome}), "application/problem+json")
    return answer, exc.outcome


@dataclass
class Twilio:
    """Twilio as once() sees it: what a create and a lookup answer, and what they were asked."""

    create_fails: Exception | None = None
    found: str | None = None  # the SID a lookup finds, if any
    find_fails: Exception | None = None
    meanwhile: Callable[[], object] = lambda: None  # what happens elsewhere during a lookup
    created: list[Attempt] = field(default_factory=list)
    looked_up: list[Attempt] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)

    def creation(self) -> Creation:
        return Creation(INTENT, self.create, self.find)

    def create(self, attempt: Attempt) -> Accepted:
        self.created.append(attempt)
        if self.create_fails is not None:
            raise self.create_fails
        return Accepted({"sid": "SM1"}, lambda: self.recorded.append("SM1"))

    def find(self, attempt: Attempt) -> Accepted | None:
        self.looked_up.append(attempt)
        self.meanwhile()
        if self.find_fails is not None:
            raise self.find_fails
        sid = self.found
        return None if sid is None else Accepted({"sid": sid}, lambda: self.recorded.append(sid))


def once(store: CountingStore, twilio: Twilio, now: float) -> idempotency.Answer:
    return idempotency.once(store, SETTINGS, SCOPE, KEY, FP, twilio.creation(), now, failure)


def busy(store: CountingStore, twilio: Twilio, now: float) -> tuple[float, str]:
    with pytest.raises(idempotency.Busy) as raised:
        once(store, twilio, now)
    assert str(raised.value) == raised.value.detail
    return raised.value.retry_after, raised.value.detail


def logged(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == logger]


def test_a_new_key_creates_once_and_is_settled_with_one_conditional_write() -> None:
    store, twilio = CountingStore(), Twilio()
    assert once(store, twilio, T0) == idempotency.Answer(created("SM1"), replayed=False)
    assert (twilio.created, twilio.recorded) == ([ATTEMPT], ["SM1"])  # owner: the key's digest
    assert store.key() == replace(CLAIMED, response=created("SM1"))
    assert store.trips == ["update_key", "replace_key"]  # the claim; the answer over its version
    assert store.writers == [threading.current_thread().name]  # in memory: no thread hand-off
    assert once(store, twilio, T0 + 60) == idempotency.Answer(created("SM1"), replayed=True)
    assert twilio.created == [ATTEMPT]


def test_a_remote_store_records_the_create_and_settles_the_key_side_by_side() -> None:
    store, twilio = CountingStore(remote=True), Twilio()
    assert once(store, twilio, T0) == idempotency.Answer(created("SM1"), replayed=False)
    [writer] = store.writers
    assert writer != threading.current_thread().name and writer.startswith("store")
    assert (store.key(), twilio.recorded) == (replace(CLAIMED, response=created("SM1")), ["SM1"])


@pytest.mark.parametrize("outcome", ["unknown", "not-sent", "refused"])
def test_a_failed_create_settles_the_key_by_its_outcome(outcome: twilio_errors.Outcome) -> None:
    store, twilio = CountingStore(), Twilio(create_fails=Failed(outcome))
    answer = once(store, twilio, T0)
    failed = StoredResponse(502, json.dumps({"outcome": outcome}), "application/problem+json")
    assert answer == idempotency.Answer(failed, replayed=False)
    settled = {
        "unknown": replace(CLAIMED, unknown=True),  # a retry asks Twilio
        "not-sent": replace(CLAIMED, expires_at=0.0),  # released: a retry sends
        "refused": replace(CLAIMED, response=failed),  # the same answer every time
    }
    assert store.key() == settled[outcome]
    assert store.trips == ["update_key", "replace_key"]
    assert twilio.recorded == []


def test_a_retry_waits_while_the_attempt_runs_normally_then_asks_twilio() -> None:
    store, retry = CountingStore(), Twilio()
    store.claimed_elsewhere()
    normally = SETTINGS.twilio_timeout + 5  # how long a request that goes well can take
    assert busy(store, retry, T0 + normally - 0.1) == (1, STILL_RUNNING)
    assert retry.looked_up == []
    # Past that, Twilio is asked; it has none, but the holder's lease still runs.
    assert busy(store, retry, T0 + normally) == (LEASE - normally, STILL_RUNNING)
    assert (retry.looked_up, retry.created) == ([ATTEMPT], [])
    assert store.key() == CLAIMED


def test_an_attempt_found_at_twilio_answers_the_retry_and_settles_the_key() -> None:
    store, retry = CountingStore(), Twilio(found="SM0")
    store.claimed_elsewhere()
    answer = once(store, retry, T0 + 16)
    assert answer == idempotency.Answer(created("SM0"), replayed=True)
    assert (retry.looked_up, retry.created, retry.recorded) == ([ATTEMPT], [], ["SM0"])
    assert store.key() == replace(CLAIMED, response=created("SM0"))
    assert store.trips == ["update_key", "replace_key"]


def test_when_twilio_cannot_be_asked_the_retry_waits_and_the_log_names_no_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CountingStore()
    store.claimed_elsewhere()
    retry = Twilio(find_fails=ConnectionError(f"no route to {VALID_TO}"))
    with caplog.at_level(logging.INFO, logger="shared.idempotency"):
        waited = busy(store, retry, T0 + 16)
    assert waited == (
        5.0, "An earlier attempt's outcome is unknown and Twilio cannot be asked right now."
    )  # fmt: skip
    assert logged(caplog, "shared.idempotency") == [
        ("WARNING", "Could not look up an earlier attempt at Twilio: ConnectionError")
    ]
    assert (retry.created, store.key()) == ([], CLAIMED)


def test_an_unknown_outcome_is_sent_again_once_twilio_would_have_created_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CountingStore()
    held = store.claimed_elsewhere()
    idempotency.settle(store, SCOPE, KEY, ATTEMPT, lambda r: replace(r, unknown=True), held)
    store.trips.clear()
    settled_at = T0 + SETTINGS.twilio_timeout + idempotency.SETTLE_MARGIN_SECONDS
    retry = Twilio()
    assert busy(store, retry, settled_at - 20) == (
        20,
        "An earlier attempt's outcome is unknown and Twilio may still accept it; "
        "retry after Retry-After to let the app check again.",
    )
    assert retry.created == []
    store.trips.clear()
    with caplog.at_level(logging.INFO, logger="shared.idempotency"):
        answer = once(store, retry, settled_at)
    again = replace(ATTEMPT, started_at=settled_at)
    assert answer == idempotency.Answer(created("SM1"), replayed=False)
    assert retry.looked_up == [ATTEMPT, ATTEMPT] and retry.created == [again]
    assert store.key() == IdempotencyRecord(
        FP, T0 + TTL, settled_at + LEASE, response=created("SM1"), attempt=again
    )
    # The claim read, the take-over, and the answer over the taken-over version.
    assert store.trips == ["update_key", "update_key", "replace_key"]
    assert logged(caplog, "shared.idempotency") == [
        ("INFO", "Twilio has no record of an earlier attempt; sending again")
    ]


def test_only_one_of_two_retries_sends_again() -> None:
    store = CountingStore()
    held = store.claimed_elsewhere()
    idempotency.settle(store, SCOPE, KEY, ATTEMPT, lambda r: replace(r, unknown=True), held)
    other = replace(ATTEMPT, started_at=T0 + 31)
    # While this retry asks Twilio, another one takes the attempt over.
    retry = Twilio(meanwhile=lambda: idempotency._take_over(store, SCOPE, KEY, ATTEMPT, other))
    assert busy(store, retry, T0 + 31) == (
        1, "Another retry with this Idempotency-Key is being processed."
    )  # fmt: skip
    assert retry.created == []
    assert store.key() == IdempotencyRecord(FP, T0 + TTL, T0 + 31 + LEASE, attempt=other)


def test_an_outcome_is_settled_over_a_changed_key_unless_a_retry_took_it_over() -> None:
    answered = replace(CLAIMED, response=created("SM1"))

    def settle(store: CountingStore, held: Versioned | None) -> None:
        store.trips.clear()
        answer = created("SM1")
        idempotency.settle(store, SCOPE, KEY, ATTEMPT, lambda r: replace(r, response=answer), held)

    store = CountingStore()
    held = store.claimed_elsewhere()
    store.update_key(SCOPE, KEY, lambda record: record)  # written since, still this attempt's
    settle(store, held)
    assert (store.key(), store.trips) == (answered, ["replace_key", "update_key"])
    # A retry took the key over after this attempt's lease ran out: its outcome is not the key's.
    store = CountingStore()
    held = store.claimed_elsewhere()
    later = replace(ATTEMPT, started_at=T0 + LEASE)
    assert idempotency._take_over(store, SCOPE, KEY, ATTEMPT, later) is not None
    settle(store, held)
    taken = IdempotencyRecord(FP, T0 + TTL, T0 + 2 * LEASE, attempt=later)
    assert (store.key(), store.trips) == (taken, ["replace_key", "update_key"])
    # Without the key as it was held, or with a version that cannot be written over: one read.
    for unusable in (None, Versioned(CLAIMED, None), Versioned(None, "1")):
        store = CountingStore()
        store.claimed_elsewhere()
        settle(store, unusable)
        assert (store.key(), store.trips) == (answered, ["update_key"])
    # Held for another attempt (stale): not written over; the key as it is now is settled.
    store = CountingStore()
    store.claimed_elsewhere()
    settle(store, Versioned(replace(CLAIMED, attempt=later), "1"))
    assert (store.key(), store.trips) == (answered, ["update_key"])


def test_an_outcome_the_store_cannot_take_is_left_to_the_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Down(CountingStore):
        def replace_key(
            self, scope: str, key: str, record: IdempotencyRecord, version: str
        ) -> bool:
            raise StoreUnavailable()

    store = Down()
    held = store.claimed_elsewhere()
    with caplog.at_level(logging.INFO, logger="shared.idempotency"):
        idempotency.settle(store, SCOPE, KEY, ATTEMPT, lambda r: replace(r, unknown=True), held)
    assert store.key() == CLAIMED
    assert logged(caplog, "shared.idempotency") == [
        ("ERROR", "Could not record an outcome for an idempotency key; it is settled later")
    ]


def test_what_a_stored_key_tells_a_request_to_do() -> None:
    live = IdempotencyRecord(FP, T0 + 100, T0 + 50, attempt=ATTEMPT)
    decide = idempotency.decide
    assert decide(None, FP, T0) == "new"
    assert (decide(live, FP, T0 + 99.9), decide(live, FP, T0 + 100)) == ("unknown", "new")
    assert decide(live, "another request", T0) == "mismatch"
    assert decide(replace(live, response=created("SM1")), FP, T0) == "done"
    assert (decide(live, FP, T0 + 49.9), decide(live, FP, T0 + 50)) == ("in_flight", "unknown")
    assert decide(replace(live, unknown=True), FP, T0) == "unknown"
    # A lapsed claim that kept no attempt (nothing to ask Twilio about) is claimed afresh.
    assert decide(replace(live, attempt=None), FP, T0 + 50) == "new"
    assert decide(replace(live, attempt=None, unknown=True), FP, T0) == "new"


def test_a_stored_answer_keeps_its_headers_and_its_content_type_once() -> None:
    response = func.HttpResponse(
        "{}",
        status_code=403,
        headers={"Content-Type": "text/plain", "Retry-After": "60"},
        mimetype="application/problem+json",
    )
    assert idempotency._stored(response) == StoredResponse(
        403, "{}", "application/problem+json", (("Retry-After", "60"),)
    )


def call_idempotent(
    twilio: Twilio, store: Store, key: str | None, settings: Settings = SETTINGS
) -> func.HttpResponse:
    headers = {} if key is None else {"Idempotency-Key": key}
    request = build_request("POST", SMS_URL, json_body={"to": VALID_TO}, headers=headers)
    fields = {"to": VALID_TO}
    return idempotency.idempotent(
        request, "SendSms", fields, store, settings, "caller", twilio.creation()
    )


def test_without_a_key_the_create_gets_an_attempt_of_no_key(fake_clock: FakeClock) -> None:
    store, twilio = CountingStore(), Twilio()
    response = call_idempotent(twilio, store, None)
    assert (response.status_code, body_of(response)) == (201, {"sid": "SM1"})
    # Owner "": a message no key claims, so no key's lookup takes it for its own.
    assert twilio.created == [replace(INTENT, started_at=fake_clock.time, owner="")]
    assert (twilio.recorded, store.trips) == (["SM1"], [])


@pytest.mark.parametrize(
    ("key", "store_class"),
    [(None, CountingStore), ("key-1", CountingStore), ("key-1", KeysDown)],
    ids=["without-key", "with-key", "keys-down-fail-open"],
)
def test_a_failed_create_is_answered_and_logged_under_its_route(
    caplog: pytest.LogCaptureFixture,
    fake_clock: FakeClock,
    key: str | None,
    store_class: type[CountingStore],
) -> None:
    down = AppError("Twilio is down.", status_code=503, title="Twilio unavailable")
    twilio = Twilio(create_fails=down)
    settings = replace(SETTINGS, store_fail_open=True)
    with caplog.at_level(logging.INFO, logger="shared.http_io"):
        response = call_idempotent(twilio, store_class(), key, settings)
    assert (response.status_code, body_of(response)["title"]) == (503, "Twilio unavailable")
    assert logged(caplog, "shared.http_io") == [
        ("WARNING", "SendSms answered 503: Twilio unavailable")
    ]


def test_a_refusal_is_kept_under_the_key_with_its_headers(fake_clock: FakeClock) -> None:
    refused = AppError("Not now.", status_code=403, title="Refused", headers={"Retry-After": "60"})
    store, twilio = CountingStore(), Twilio(create_fails=refused)
    first = call_idempotent(twilio, store, KEY)
    record = MemoryStore.update_key(store, "caller|SendSms", KEY, lambda r: None).record
    assert record is not None
    body = json.dumps(
        {"type": "about:blank", "title": "Refused", "status": 403, "detail": "Not now."}
    )
    assert record.response == StoredResponse(
        403, body, "application/problem+json", (("Retry-After", "60"),)
    )
    replay = call_idempotent(twilio, store, KEY)
    assert (replay.status_code, replay.get_body().decode(), replay.mimetype) == (
        403, body, "application/problem+json"
    )  # fmt: skip
    assert (first.headers["Retry-After"], replay.headers["Retry-After"]) == ("60", "60")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(twilio.created) == 1


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_store_that_cannot_be_reached_refuses_unless_failing_open(
    caplog: pytest.LogCaptureFixture, fake_clock: FakeClock, fail_open: bool
) -> None:
    twilio = Twilio()
    settings = replace(SETTINGS, store_fail_open=fail_open)
    with caplog.at_level(logging.INFO, logger="shared.idempotency"):
        if not fail_open:
            with pytest.raises(StoreUnavailable):
                call_idempotent(twilio, KeysDown(), KEY, settings)
            assert (twilio.created, logged(caplog, "shared.idempotency")) == ([], [])
            return
        response = call_idempotent(twilio, KeysDown(), KEY, settings)
    assert (response.status_code, body_of(response)) == (201, {"sid": "SM1"})
    assert twilio.created == [replace(INTENT, started_at=fake_clock.time, owner="")]
    assert logged(caplog, "shared.idempotency") == [
        ("WARNING", "State store unavailable: SendSms runs without idempotency (fail open)")
    ]
