"""End to end over real sockets: the local host serving function_app, with the sandbox."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from devhost.__main__ import load_local_settings
from devhost.host import _aiohttp_route
from tests.conftest import VALID_TO, DevHost


def test_health_in_sandbox_mode(devhost: DevHost) -> None:
    response = requests.get(f"{devhost.url}/api/health", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "status": "ok",
        "twilio": "sandbox",
        "signatureValidation": True,
        "publicBaseUrl": devhost.url,
    }


def test_send_sms_appears_in_the_sandbox(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/SendSms", json={"to": VALID_TO, "body": "over the wire"}, timeout=10
    )
    assert response.status_code == 201
    sid = response.json()["sid"]
    [message] = [m for m in devhost.sandbox.messages() if m["sid"] == sid]
    assert (message["to"], message["from"], message["body"]) == (
        VALID_TO,
        "+15005550006",
        "over the wire",
    )


def test_call_fetches_signed_twiml_and_records_what_is_heard(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/MakeCall",
        json={"to": VALID_TO, "message": "Your code is 1 2 3 & more", "voice": "Polly.Joanna"},
        timeout=10,
    )
    assert response.status_code == 201
    call = devhost.sandbox.settled_call(response.json()["sid"])
    assert call["status"] == "completed"
    assert call["twiml_request"]["status"] == 200
    assert call["twiml_request"]["contentType"] == "application/xml"
    assert call["heard"] == [
        {"verb": "Say", "text": "Your code is 1 2 3 & more", "voice": "Polly.Joanna"}
    ]


def test_unsigned_twiml_request_is_403(devhost: DevHost) -> None:
    response = requests.get(f"{devhost.url}/api/TwiML?message=hi", timeout=10)
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json; charset=utf-8"
    assert response.json()["detail"] == "Missing X-Twilio-Signature header."


def test_bad_input_over_http(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/SendSms",
        data=b"{broken",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert (response.status_code, response.json()["title"]) == (400, "Malformed JSON")
    response = requests.get(f"{devhost.url}/api/MakeCall", timeout=10)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert requests.get(f"{devhost.url}/api/nothing-here", timeout=10).status_code == 404


def test_magic_number_through_the_whole_stack(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/SendSms", json={"to": "+15005550004", "body": "x"}, timeout=10
    )
    assert (response.status_code, response.json()["twilioCode"]) == (409, 21610)


def test_sandbox_requires_twilio_credentials(devhost: DevHost) -> None:
    url = f"{devhost.sandbox.url}/2010-04-01/Accounts/AC{'0' * 32}/Messages.json"
    response = requests.post(
        url, data={"To": VALID_TO, "From": "+15005550006", "Body": "x"}, timeout=10
    )
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_local_settings_values_load_but_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"DEVHOST_TEST_A": "file", "DEVHOST_TEST_B": "file"}}))
    monkeypatch.setenv("DEVHOST_TEST_B", "env")
    monkeypatch.delenv("DEVHOST_TEST_A", raising=False)
    load_local_settings(path)
    assert (os.environ["DEVHOST_TEST_A"], os.environ["DEVHOST_TEST_B"]) == ("file", "env")
    monkeypatch.delenv("DEVHOST_TEST_A")


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("SendSms", "SendSms"),
        ("messages/{sid}", "messages/{sid}"),
        ("items/{id:int}", "items/{id}"),
    ],
)
def test_functions_routes_become_aiohttp_routes(route: str, expected: str) -> None:
    assert _aiohttp_route(route) == expected
