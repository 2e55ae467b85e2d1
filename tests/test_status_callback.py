"""The callback matrix through StatusCallback, and the status the app then reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import (
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    VALID_TO,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
)

CALLBACK = f"{PUBLIC_BASE_URL}/api/StatusCallback"
SID = "SM" + "a" * 32
CALL_SID = "CA" + "a" * 32
VALIDATOR = RequestValidator(AUTH_TOKEN)


@pytest.fixture
def handlers(functions: dict[str, Handler], app_env: SetEnv) -> dict[str, Handler]:
    return functions


def post_callback(
    handlers: dict[str, Handler], form: Mapping[str, str], *, signature: str | None = None
) -> func.HttpResponse:
    sig = signature or VALIDATOR.compute_signature(CALLBACK, dict(form))
    return handlers["StatusCallback"](
        build_request("POST", CALLBACK, form=form, headers={"X-Twilio-Signature": sig})
    )


def message_status(handlers: dict[str, Handler], sid: str) -> tuple[int, Any]:
    response = handlers["MessageStatus"](
        build_request("GET", f"{PUBLIC_BASE_URL}/api/messages/{sid}", route_params={"sid": sid})
    )
    return response.status_code, body_of(response)


def sms_status(status: str, sid: str = SID, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "AccountSid": "AC" + "0" * 32,
        **extra,
    }


@pytest.fixture
def sent_sms(handlers: dict[str, Handler], sandbox: Sandbox) -> str:
    response = handlers["SendSms"](build_request("POST", json_body={"to": VALID_TO, "body": "x"}))
    assert response.status_code == 201
    sid: str = body_of(response)["sid"]
    return sid


def test_valid_callback_is_204_with_empty_body(handlers: dict[str, Handler], sent_sms: str) -> None:
    response = post_callback(handlers, sms_status("sent", sent_sms))
    assert (response.status_code, response.get_body()) == (204, b"")
    status, body = message_status(handlers, sent_sms)
    assert (status, body["status"], [h["status"] for h in body["history"]]) == (
        200,
        "sent",
        ["queued", "sent"],
    )


def test_duplicates_and_late_callbacks_change_nothing(
    handlers: dict[str, Handler], sent_sms: str
) -> None:
    for status in ("delivered", "delivered", "sent", "queued", "failed"):
        assert post_callback(handlers, sms_status(status, sent_sms)).status_code == 204
    _, body = message_status(handlers, sent_sms)
    assert (body["status"], [h["status"] for h in body["history"]]) == (
        "delivered",
        ["queued", "delivered"],
    )


def test_failure_shows_its_error_code(handlers: dict[str, Handler], sent_sms: str) -> None:
    post_callback(handlers, sms_status("undelivered", sent_sms, ErrorCode="30003"))
    _, body = message_status(handlers, sent_sms)
    assert body == {
        "sid": sent_sms,
        "status": "undelivered",
        "to": VALID_TO,
        "errorCode": 30003,
        "createdAt": body["createdAt"],
        "history": [
            {"status": "queued", "at": body["history"][0]["at"]},
            {"status": "undelivered", "at": body["history"][1]["at"], "errorCode": 30003},
        ],
    }


def test_unknown_sid_is_acknowledged_but_not_shown(handlers: dict[str, Handler]) -> None:
    assert post_callback(handlers, sms_status("delivered")).status_code == 204
    assert message_status(handlers, SID) == (
        404,
        {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": f"No message {SID} was created through this app.",
        },
    )


def test_call_callbacks(handlers: dict[str, Handler]) -> None:
    for status in ("ringing", "initiated", "in-progress", "completed"):
        form = {
            "CallSid": CALL_SID,
            "CallStatus": status,
            **({"CallDuration": "7"} if status == "completed" else {}),
        }
        assert post_callback(handlers, form).status_code == 204
    from shared.settings import get_settings
    from shared.state import get_store

    record = get_store(get_settings()).delivery("call", CALL_SID)
    assert record is not None
    assert (record.status, record.duration, [e.status for e in record.history]) == (
        "completed", 7, ["ringing", "in-progress", "completed"],
    )  # fmt: skip


def test_bad_signature_is_403_and_changes_nothing(
    handlers: dict[str, Handler], sent_sms: str
) -> None:
    forged = VALIDATOR.compute_signature(CALLBACK, sms_status("sent", sent_sms))
    response = post_callback(handlers, sms_status("delivered", sent_sms), signature=forged)
    assert (response.status_code, body_of(response)["rule"], body_of(response)["detail"]) == (
        403, "twilio-signature", "X-Twilio-Signature does not match this request."
    )  # fmt: skip
    assert message_status(handlers, sent_sms)[1]["status"] == "queued"


def test_json_callback_with_body_sha256(handlers: dict[str, Handler], sent_sms: str) -> None:
    body = json.dumps(sms_status("delivered", sent_sms)).encode()
    url = f"{CALLBACK}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    request = build_request(
        "POST", url, body=body,
        headers={"Content-Type": "application/json", "X-Twilio-Signature": VALIDATOR.compute_signature(url, {})},
    )  # fmt: skip
    assert handlers["StatusCallback"](request).status_code == 204
    assert message_status(handlers, sent_sms)[1]["status"] == "delivered"


def test_json_callback_without_body_hash_is_403(
    handlers: dict[str, Handler], sent_sms: str
) -> None:
    request = build_request(
        "POST", CALLBACK, json_body=sms_status("delivered", sent_sms),
        headers={"X-Twilio-Signature": VALIDATOR.compute_signature(CALLBACK, {})},
    )  # fmt: skip
    response = handlers["StatusCallback"](request)
    assert (response.status_code, body_of(response)["rule"], body_of(response)["detail"]) == (
        403, "twilio-signature", "A signed body must be form-encoded or carry bodySHA256."
    )  # fmt: skip


def test_callback_without_a_sid_is_400(handlers: dict[str, Handler]) -> None:
    response = post_callback(handlers, {"AccountSid": "AC" + "0" * 32})
    assert (response.status_code, body_of(response)["detail"]) == (
        400,
        "A status callback carries MessageSid or CallSid.",
    )


def test_sends_ask_twilio_for_status_callbacks(
    handlers: dict[str, Handler], sandbox: Sandbox
) -> None:
    handlers["MakeCall"](
        build_request("POST", f"{PUBLIC_BASE_URL}/api/MakeCall", json_body={"to": VALID_TO})
    )
    call = sandbox.settled_call(sandbox.calls()[0]["sid"])
    # The sandbox does not reach functions.example.com; it records what it would have posted.
    # Nor can it fetch the TwiML there: the call was answered already, so it completes.
    assert [c["status"] for c in call["callbacks"]] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [a["error_code"] for a in sandbox.alerts()] == ["11200"]
