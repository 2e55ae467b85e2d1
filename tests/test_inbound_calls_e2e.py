"""Done when: call in from the sandbox, reach the voicemail, and see the recording's callback
stored, end to end on devhost in sandbox mode (the real worker, signed webhooks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import DevHost, Sandbox, start_devhost

CALLER = "+14155550123"
FORWARD = "+14155550100"
NUMBER = "+15005550006"  # the sandbox's number, which the caller rings


@pytest.fixture(scope="module")
def forwarding_host() -> Iterator[DevHost]:
    host = start_devhost({"INBOUND_FORWARD_NUMBER": FORWARD, "INBOUND_DIAL_TIMEOUT_SECONDS": "15"})
    yield host
    host.stop()


def call_in(host: DevHost, **body: str) -> dict[str, Any]:
    answer = requests.post(f"{host.sandbox.url}/sandbox/incoming-calls", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    sid = answer.json()["sid"]
    call: dict[str, Any] = host.sandbox.get(f"/sandbox/incoming-calls/{sid}?wait=15")
    return call


def test_a_call_nobody_answers_is_forwarded_then_reaches_voicemail(
    forwarding_host: DevHost,
) -> None:
    host = forwarding_host
    call = call_in(host, **{"from": CALLER})
    [recording] = call["recordings"]
    api = f"{host.url}/api/IncomingCall"
    assert (call["status"], call["from"], call["to"]) == ("completed", CALLER, NUMBER)
    assert [(s["step"], s["target"], s["outcome"]) for s in call["steps"]] == [
        ("webhook", api, 200),
        ("dial", FORWARD, "no-answer"),
        ("webhook", f"{api}/DialAction", 200),
        ("record", recording["sid"], "5 s"),
        ("webhook", f"{api}/RecordAction", 200),
        ("hangup", "", ""),
        ("recording callback", f"{api}/RecordingStatus", 204),
    ], host.log()[-3000:]
    assert [verb["verb"] for verb in call["heard"]] == ["Say", "Record"]
    assert call["heard"][0]["text"].startswith("Sorry, no one can take your call.")
    voicemails = requests.get(f"{host.url}/sandbox/voicemails", timeout=10).json()["voicemails"]
    assert voicemails == [
        {
            "call_sid": call["sid"], "recording_sid": recording["sid"], "status": "completed",
            "at": voicemails[0]["at"], "url": recording["url"], "duration": 5,
            "error_code": None, "from_number": CALLER, "to_number": NUMBER,
        }
    ]  # fmt: skip
    # The URL is the sandbox's, as Twilio's is Twilio's: the app stored it, never fetched it.
    assert recording["url"].startswith(f"{host.sandbox.url}/2010-04-01/Accounts/AC")
    audio = requests.get(recording["url"], timeout=10)
    assert (audio.status_code, audio.headers["Content-Type"], audio.content[:4]) == (
        200,
        "audio/x-wav",
        b"RIFF",
    )


def test_without_a_forward_number_the_caller_goes_straight_to_voicemail(devhost: DevHost) -> None:
    call = call_in(devhost, **{"from": "+14155550124"})
    api = f"{devhost.url}/api/IncomingCall"
    assert [(s["step"], s["target"]) for s in call["steps"]] == [
        ("webhook", api),
        ("record", call["recordings"][0]["sid"]),
        ("webhook", f"{api}/RecordAction"),
        ("hangup", ""),
        ("recording callback", f"{api}/RecordingStatus"),
    ]
    stored = requests.get(f"{devhost.url}/sandbox/voicemails", timeout=10).json()["voicemails"]
    assert [
        (v["recording_sid"], v["from_number"]) for v in stored if v["call_sid"] == call["sid"]
    ] == [(call["recordings"][0]["sid"], "+14155550124")]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"from": CALLER, "to": "+14155550198", "url": "http://127.0.0.1:9/x"},
         "+14155550198 is not one of the account's numbers: Twilio would not ring it"),
        ({"from": CALLER}, "the number has no voice URL (InboundCalls.voice_url, or `url`)"),
    ],
)  # fmt: skip
def test_the_sandbox_rings_only_the_accounts_numbers_with_a_voice_url(
    sandbox: Sandbox, body: dict[str, str], error: str
) -> None:
    answer = requests.post(f"{sandbox.url}/sandbox/incoming-calls", json=body, timeout=10)
    assert (answer.status_code, answer.json()) == (400, {"error": error})


def test_an_unusable_voice_url_is_an_application_error(sandbox: Sandbox) -> None:
    body = {"from": CALLER, "url": "https://example.com/not-loopback"}
    sid = requests.post(f"{sandbox.url}/sandbox/incoming-calls", json=body, timeout=10).json()[
        "sid"
    ]
    call = sandbox.get(f"/sandbox/incoming-calls/{sid}?wait=10")
    assert call["heard"] == [
        {"verb": "Say", "text": "We're sorry, but an application error has occurred. Goodbye!"}
    ]
    assert [a["error_code"] for a in sandbox.alerts() if a["resource_sid"] == sid] == ["11200"]
