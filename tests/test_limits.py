"""Abuse limits and opt-outs through SendSms/MakeCall (in-memory store)."""

from __future__ import annotations

import pytest

from shared.settings import load_settings
from tests.conftest import (
    PUBLIC_BASE_URL,
    VALID_TO,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
    post_json,
)

SMS_URL = f"{PUBLIC_BASE_URL}/api/SendSms"


@pytest.fixture
def handlers(functions: dict[str, Handler], app_env: SetEnv) -> dict[str, Handler]:
    return functions


def test_per_destination_limit_counts_messages_and_calls(
    handlers: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(LIMIT_PER_DESTINATION="3/hour")
    assert post_json(handlers["SendSms"], SMS_URL, {"to": VALID_TO, "body": "1"})[0] == 201
    assert (
        post_json(handlers["MakeCall"], f"{PUBLIC_BASE_URL}/api/MakeCall", {"to": VALID_TO})[0]
        == 201
    )
    assert post_json(handlers["SendSms"], SMS_URL, {"to": VALID_TO, "body": "3"})[0] == 201
    response = handlers["SendSms"](
        build_request("POST", SMS_URL, json_body={"to": VALID_TO, "body": "4"})
    )
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert body_of(response) == {
        "type": "urn:twilio-functions:problem:rate-limited",
        "title": "Too many requests",
        "status": 429,
        "detail": "The destination limit of 3 per hour is reached; nothing was sent.",
        "limit": "destination",
    }
    assert len(sandbox.requests()) == 3
    assert post_json(handlers["SendSms"], SMS_URL, {"to": "+14155550101", "body": "x"})[0] == 201


def test_per_caller_limit(handlers: dict[str, Handler], app_env: SetEnv) -> None:
    app_env(LIMIT_PER_CALLER="2/minute")

    def send(ip: str, to: str) -> int:
        request = build_request(
            "POST",
            SMS_URL,
            json_body={"to": to, "body": "x"},
            headers={"X-Forwarded-For": f"{ip}:1"},
        )
        return int(handlers["SendSms"](request).status_code)

    assert [send("203.0.113.1", f"+1415555010{i}") for i in range(3)] == [201, 201, 429]
    assert send("203.0.113.2", "+14155550109") == 201
    # A client cannot pick its own identity: only the last hop counts.
    spoofed = build_request(
        "POST", SMS_URL, json_body={"to": "+14155550108", "body": "x"},
        headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.1:1"},
    )  # fmt: skip
    assert handlers["SendSms"](spoofed).status_code == 429


def test_global_limit(handlers: dict[str, Handler], app_env: SetEnv) -> None:
    app_env(LIMIT_GLOBAL="2/day")
    statuses = [
        post_json(handlers["SendSms"], SMS_URL, {"to": f"+1415555010{i}", "body": "x"})[0]
        for i in range(3)
    ]
    assert statuses == [201, 201, 429]


def test_limits_can_be_switched_off(handlers: dict[str, Handler], app_env: SetEnv) -> None:
    app_env(LIMIT_PER_DESTINATION="off")
    statuses = {
        post_json(handlers["SendSms"], SMS_URL, {"to": VALID_TO, "body": "x"})[0] for _ in range(7)
    }
    assert statuses == {201}


def test_limit_settings_are_validated() -> None:
    settings = load_settings({"LIMIT_PER_CALLER": "10/minute", "LIMIT_GLOBAL": "off"})
    assert (settings.limit_per_caller.count, settings.limit_per_caller.window_seconds) == (10, 60)  # type: ignore[union-attr]
    assert settings.limit_global is None


def test_opt_out_is_remembered(handlers: dict[str, Handler], sandbox: Sandbox) -> None:
    first = post_json(handlers["SendSms"], SMS_URL, {"to": "+15005550004", "body": "x"})
    assert (first[0], first[1]["twilioCode"]) == (409, 21610)
    assert post_json(handlers["SendSms"], SMS_URL, {"to": "+15005550004", "body": "x"}) == (
        409,
        {
            "type": "urn:twilio-functions:problem:twilio",
            "title": "Recipient has opted out (replied STOP)",
            "status": 409,
            "detail": "The recipient replied STOP to this sender; Twilio will not deliver until they opt in.",
            "twilioCode": 21610,
        },
    )
    assert len(sandbox.requests()) == 1  # the second never reached Twilio
