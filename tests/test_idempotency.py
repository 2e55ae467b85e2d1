"""Idempotency-Key on SendSms and MakeCall (in-memory store; Azurite in test_state_e2e)."""

from __future__ import annotations

import time
from typing import Any

import azure.functions as func
import pytest

from shared.idempotency import request_fingerprint
from shared.settings import get_settings
from shared.state import get_store
from tests.conftest import (
    PUBLIC_BASE_URL,
    VALID_TO,
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
        },
    )
    assert len(sandbox.messages()) == 1


def test_in_flight_duplicate_is_409_with_retry_after(send_sms: Handler, sandbox: Sandbox) -> None:
    # The first request's claim, as if it were still running in another process.
    fingerprint = request_fingerprint({"to": VALID_TO, "body": "x"})
    get_store(get_settings()).claim_key(
        "ip:unknown|SendSms", "key-1", fingerprint, time.time(), 3600, 600
    )
    response = send(send_sms, {"to": VALID_TO, "body": "x"})
    assert (response.status_code, response.headers["Retry-After"], body_of(response)["title"]) == (
        409, "1", "Request in progress",
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
    assert send(send_sms, {"to": "+15005550428", "body": "x"}).status_code == 503  # 429 once
    retry = send(send_sms, {"to": "+15005550428", "body": "x"})
    assert (retry.status_code, "Idempotent-Replayed" in retry.headers) == (201, False)
    assert len(sandbox.messages()) == 1


def test_a_timeout_is_kept_because_twilio_may_have_sent(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_TIMEOUT_SECONDS="0.3")
    assert send(send_sms, {"to": "+15005550504", "body": "x"}).status_code == 504
    replay = send(send_sms, {"to": "+15005550504", "body": "x"})
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (504, "true")
    assert len(sandbox.requests()) == 1


def test_validation_errors_do_not_use_the_key(send_sms: Handler, sandbox: Sandbox) -> None:
    assert send(send_sms, {"to": "nope", "body": "x"}).status_code == 400
    assert send(send_sms, {"to": VALID_TO, "body": "x"}).status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_malformed_keys_are_400(send_sms: Handler, key: str) -> None:
    response = send(send_sms, {"to": VALID_TO, "body": "x"}, key=key)
    assert (response.status_code, body_of(response)["detail"]) == (
        400,
        "Idempotency-Key must be 1 to 255 printable ASCII characters.",
    )


def test_without_the_header_every_request_sends(send_sms: Handler, sandbox: Sandbox) -> None:
    send(send_sms, {"to": VALID_TO, "body": "x"}, key=None)
    send(send_sms, {"to": VALID_TO, "body": "x"}, key=None)
    assert len(sandbox.messages()) == 2


def test_make_call_honours_the_key(
    functions: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox
) -> None:
    def call() -> func.HttpResponse:
        return functions["MakeCall"](
            build_request(
                "POST",
                f"{PUBLIC_BASE_URL}/api/MakeCall",
                json_body={"to": VALID_TO},
                headers={"Idempotency-Key": "c1"},
            )
        )

    assert call().get_body() == call().get_body()
    assert len(sandbox.calls()) == 1
