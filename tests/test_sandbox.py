"""The sandbox itself: what it does when a call's TwiML cannot be used, segment counting."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from devhost.sandbox import NOT_REACHED, may_reach, segments
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, VALID_TO, Sandbox

CALLS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


def create_call(sandbox: Sandbox, **params: str) -> dict[str, Any]:
    response = requests.post(
        f"{sandbox.url}{CALLS}",
        data={"To": VALID_TO, "From": "+15005550006", **params},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert response.status_code == 201
    return sandbox.settled_call(response.json()["sid"])


def test_twiml_with_wrong_content_type_fails_the_call_with_12300(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Url=f"{sandbox.url}/sandbox/messages", Method="GET")
    assert (call["status"], call["error_code"]) == ("failed", 12300)


def test_unreachable_twiml_fails_the_call_with_11200(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Url="http://127.0.0.1:9/twiml")
    assert (call["status"], call["error_code"]) == ("failed", 11200)


def test_inline_twiml_is_heard(sandbox: Sandbox) -> None:
    call = create_call(
        sandbox, Twiml="<Response><Say>Hi</Say><Play>https://x/a.mp3</Play></Response>"
    )
    assert call["status"] == "completed"
    assert call["heard"] == [
        {"verb": "Say", "text": "Hi"},
        {"verb": "Play", "url": "https://x/a.mp3"},
    ]


def test_unparseable_twiml_fails_with_12100(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Twiml="<Response><Say>")
    assert (call["status"], call["error_code"]) == ("failed", 12100)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:7071/api/TwiML", True),
        ("http://127.8.9.10/x", True),
        ("http://localhost:7071/api/StatusCallback", True),
        ("http://LOCALHOST/x", True),
        ("http://[::1]:7071/x", True),
        ("http://127.attacker.example/twiml", False),
        ("http://127.0.0.1.nip.io/twiml", False),
        ("http://127.0.0.1@attacker.example/twiml", False),
        ("http://localhost.attacker.example/x", False),
        ("http://0.0.0.0:7071/x", False),
        ("http://10.0.0.1/x", False),
        ("http://[::2]/x", False),
        ("https://functions.example.com/api/TwiML", False),
    ],
)
def test_only_loopback_is_reached(url: str, allowed: bool) -> None:
    assert may_reach(url) is allowed
    assert may_reach(url, internet=True) is True


def test_a_name_starting_with_127_is_not_fetched(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Url="http://127.attacker.example/twiml")
    assert call["twiml_request"]["error"] == NOT_REACHED


def test_wrong_account_is_404(sandbox: Sandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/AC{'f' * 32}/Calls.json",
        data={"To": VALID_TO},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert (response.status_code, response.json()["code"]) == (404, 20404)


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("[" * 80, 1),  # extension characters take two septets
        ("[" * 81, 2),
        ("é" * 160, 1),  # é is in the GSM-7 alphabet
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("😀" * 35, 1),  # outside the BMP: two UCS-2 units each
        ("😀" * 36, 2),
    ],
)
def test_segments(body: str, count: int) -> None:
    assert segments(body) == count
