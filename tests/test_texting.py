"""The sandbox as Twilio for a phone that texts back: its own opt-out handling, the signed
webhook, and the replies it sends (devhost/texting.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import MultiDict

from devhost.sandbox import SANDBOX, SandboxConfig, TwilioError, create_sandbox_app
from devhost.texting import TWILIO_REPLIES, twilio_keyword
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, MG_SID, VALID_FROM
from tests.test_devhost_phone import Receiver

PHONE = "+14155550100"
AUTO = "<Response><Message>Thanks!</Message><Message><Body>Bye</Body></Message></Response>"


@pytest.fixture
def app() -> Iterator[Receiver]:
    receiver = Receiver(AUTO)
    yield receiver
    receiver.stop()


def texts(url: str, *bodies: str, sent_via: str | None = None) -> tuple[Any, list[Any]]:
    """The sandbox after `PHONE` texted `bodies` (to the sender that texted it first)."""
    config = SandboxConfig(
        ACCOUNT_SID, AUTH_TOKEN, owned_numbers=frozenset({VALID_FROM}),
        messaging_services=frozenset({MG_SID}), incoming_sms_url=url,
    )  # fmt: skip
    sandbox = create_sandbox_app(config)[SANDBOX]
    sandbox.state.messages["SM0"] = {
        "sid": "SM0", "to": PHONE, "from": VALID_FROM, "direction": "outbound-api",
        "messaging_service_sid": sent_via,
    }  # fmt: skip

    async def run() -> list[Any]:
        return [await sandbox.receive_sms(PHONE, body) for body in bodies]

    return sandbox, asyncio.run(run())


def refusal(sandbox: Any, **form: str) -> int | None:
    try:
        sandbox._check_message(MultiDict({"To": PHONE, "Body": "x", **form}))
    except TwilioError as error:
        return error.code
    return None


def sent_back(sandbox: Any) -> list[str]:
    return [
        m["body"] for m in sandbox.state.messages.values() if m["direction"] == "outbound-reply"
    ]


def test_a_text_is_posted_signed_and_the_twiml_messages_are_sent_back(app: Receiver) -> None:
    sandbox, [message] = texts(app.url, "Hello")
    assert (message["direction"], message["status"], message["to"]) == (
        "inbound", "received", VALID_FROM,
    )  # fmt: skip
    assert message["webhook"] == {"url": app.url, "response": 200, "body": AUTO}
    [form] = app.received
    assert (form["MessageSid"], form["From"], form["To"], form["Body"]) == (
        message["sid"], PHONE, VALID_FROM, "Hello",
    )  # fmt: skip
    assert "OptOutType" not in form and "MessagingServiceSid" not in form
    assert sent_back(sandbox) == ["Thanks!", "Bye"]


def test_stop_is_twilios_to_answer_and_to_enforce_until_start(app: Receiver) -> None:
    sandbox, _ = texts(app.url, "stop")
    assert sent_back(sandbox) == [TWILIO_REPLIES["STOP"]]  # not the app's TwiML
    assert refusal(sandbox, From=VALID_FROM) == 21610
    sandbox, _ = texts(app.url, "STOP", "Start")
    assert refusal(sandbox, From=VALID_FROM) is None
    assert sent_back(sandbox) == [TWILIO_REPLIES["STOP"], TWILIO_REPLIES["START"]]


def test_reset_forgets_the_phones_texts_and_its_stop(app: Receiver) -> None:
    sandbox, _ = texts(app.url, "STOP")
    assert (len(sandbox.state.messages), refusal(sandbox, From=VALID_FROM)) == (3, 21610)

    async def reset() -> str | None:
        answer: web.Response = await sandbox.reset(make_mocked_request("POST", "/sandbox/reset"))
        return answer.text

    assert asyncio.run(reset()) == '{"reset": true}'
    assert (sandbox.state.messages, refusal(sandbox, From=VALID_FROM)) == ({}, None)


def test_through_a_messaging_service_stop_holds_for_the_service(app: Receiver) -> None:
    sandbox, _ = texts(app.url, "STOP", sent_via=MG_SID)
    assert app.received[0]["MessagingServiceSid"] == MG_SID
    assert (refusal(sandbox, MessagingServiceSid=MG_SID), refusal(sandbox, From=VALID_FROM)) == (
        21610,
        None,
    )


def test_without_a_reachable_webhook_the_text_is_kept_and_nothing_posted() -> None:
    sandbox, [message] = texts("https://example.com/api/IncomingSms", "Hi")
    assert message["webhook"]["response"].startswith("not sent")
    sandbox, [message] = texts("", "Hi")
    assert message["webhook"] == {"url": "", "response": "no webhook"}
    assert sent_back(sandbox) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [("STOP", "STOP"), (" end\n", "STOP"), ("Yes", "START"), ("info", "HELP"), ("stop it", None)],
)
def test_twilios_keywords(body: str, expected: str | None) -> None:
    assert twilio_keyword(body) == expected
