"""Done when (issue 15, SMS): end to end on the devhost in sandbox mode, over HTTP only.

Send an SMS, reply as the phone through the console's endpoint (the sandbox posts the
signed webhook Twilio would), read the reply through GET /api/conversations/{number};
reply STOP and the next send is 409 without reaching the sandbox's Messages API; START
and sends work again.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import requests

from devhost.texting import TWILIO_REPLIES
from tests.conftest import DevHost


def send(devhost: DevHost, to: str, body: str) -> requests.Response:
    return requests.post(f"{devhost.url}/api/SendSms", json={"to": to, "body": body}, timeout=10)


def reply(devhost: DevHost, phone: str, body: str) -> dict[str, Any]:
    response = requests.post(
        f"{devhost.url}/sandbox/reply", json={"phone": phone, "body": body}, timeout=20
    )
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def conversation(devhost: DevHost, phone: str, query: str = "") -> dict[str, Any]:
    response = requests.get(f"{devhost.url}/api/conversations/{quote(phone)}{query}", timeout=10)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def creates_to(devhost: DevHost, phone: str) -> int:
    return sum(
        1 for r in devhost.sandbox.requests() if r["resource"] == "Messages" and r["to"] == phone
    )


def test_reply_stop_and_start_round_trip(devhost: DevHost) -> None:
    phone = f"+1415555{random.randrange(200, 1000):04d}"
    first = send(devhost, phone, "Does 3pm work?")
    assert first.status_code == 201, first.text
    answer = reply(devhost, phone, "Yes, 3pm works")
    assert answer["webhook"]["response"] == 200
    assert answer["webhook"]["body"] == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    assert (answer["from"], answer["to"], answer["direction"]) == (
        phone,
        first.json()["from"],
        "inbound",
    )
    page = conversation(devhost, phone)
    assert [(m["direction"], m["body"]) for m in page["messages"]] == [
        ("inbound", "Yes, 3pm works"),
        ("outbound", "Does 3pm work?"),
    ]
    assert page["messages"][0]["sid"] == answer["sid"]
    assert page["next"] is None

    # STOP: the app records it at once; Twilio (the sandbox) answers it, the app does not.
    stop = reply(devhost, phone, " Stop ")
    assert stop["webhook"]["body"] == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    creates = creates_to(devhost, phone)
    refused = send(devhost, phone, "Still there?")
    assert (refused.status_code, refused.json()["rule"], refused.json()["twilioCode"]) == (
        409,
        "opt-out",
        21610,
    )
    assert creates_to(devhost, phone) == creates  # the Messages API never saw it
    replies = [
        m["body"]
        for m in devhost.sandbox.messages()
        if m["to"] == phone and m["direction"] == "outbound-reply"
    ]
    assert replies == [TWILIO_REPLIES["STOP"]]  # Twilio's confirmation, and only that

    reply(devhost, phone, "START")
    again = send(devhost, phone, "Welcome back")
    assert again.status_code == 201, again.text
    assert creates_to(devhost, phone) == creates + 1
    newest = conversation(devhost, phone, "?limit=2")
    assert [m["body"] for m in newest["messages"]] == ["Welcome back", "START"]
    older = conversation(devhost, phone, f"?limit=2&after={newest['next']}")
    assert [m["body"] for m in older["messages"]] == [" Stop ", "Yes, 3pm works"]


def test_the_console_refuses_a_reply_that_is_not_one(devhost: DevHost) -> None:
    payloads: list[Any] = [
        {"phone": "0415", "body": "x"},
        {"phone": "+14155550100", "body": ""},
        [],
    ]
    for payload in payloads:
        response = requests.post(f"{devhost.url}/sandbox/reply", json=payload, timeout=10)
        assert response.status_code == 400, payload
