"""devhost.phone: the webhooks the sandbox posts as Twilio would, signed and named as Twilio does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from devhost.phone import WebhookAnswer, country_of, inbound_sms_params, post_webhook
from devhost.serving import BackgroundServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, free_port


class Receiver:
    """An app on loopback that checks X-Twilio-Signature as the app does, then answers
    `twiml`."""

    def __init__(self, twiml: str = "<Response/>") -> None:
        self.received: list[dict[str, str]] = []
        self.twiml = twiml
        app = web.Application()
        app.router.add_post("/api/IncomingSms", self._receive)
        self._server = BackgroundServer(app).start()
        self.url = f"{self._server.url}/api/IncomingSms"

    async def _receive(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(AUTH_TOKEN).validate(str(request.url), form, signature):
            return web.Response(status=403)
        self.received.append(form)
        return web.Response(text=self.twiml, content_type="application/xml")

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Receiver()
    yield app
    app.stop()


def test_a_webhook_is_signed_with_the_auth_token(receiver: Receiver) -> None:
    params = inbound_sms_params(ACCOUNT_SID, "+14155550100", "+15005550006", "Hi & bye")
    answer = asyncio.run(post_webhook(f"{receiver.url}?a=1&b=%3D", params, AUTH_TOKEN))
    assert answer == WebhookAnswer(200, "application/xml; charset=utf-8", "<Response/>")
    assert receiver.received == [params]


def test_another_token_is_refused(receiver: Receiver) -> None:
    params = inbound_sms_params(ACCOUNT_SID, "+14155550100", "+15005550006", "Hi")
    answer = asyncio.run(post_webhook(receiver.url, params, "0" * 32))
    assert (answer.status, answer.outcome, receiver.received) == (403, 403, [])


def test_no_answer_is_the_failures_name() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/IncomingSms"
    answer = asyncio.run(post_webhook(url, {"Body": "Hi"}, AUTH_TOKEN, timeout=5))
    assert (answer.status, answer.outcome) == (0, "ClientConnectorError")


def test_inbound_sms_params_are_twilios() -> None:
    params = inbound_sms_params(
        ACCOUNT_SID, "+447700900123", "+15005550006", "STOP", sid="SM" + "a" * 32,
        messaging_service_sid="MG" + "b" * 32,
        media=[("https://example.com/a.jpg", "image/jpeg"), ("https://example.com/b.png", "image/png")],
        segments=2, opt_out_type="STOP",
    )  # fmt: skip
    assert params == {
        "ToCountry": "US", "ToState": "", "ToCity": "", "ToZip": "",
        "FromCountry": "GB", "FromState": "", "FromCity": "", "FromZip": "",
        "SmsMessageSid": "SM" + "a" * 32, "SmsSid": "SM" + "a" * 32,
        "MessageSid": "SM" + "a" * 32, "SmsStatus": "received",
        "NumMedia": "2", "NumSegments": "2", "Body": "STOP",
        "From": "+447700900123", "To": "+15005550006",
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01",
        "MessagingServiceSid": "MG" + "b" * 32,
        "MediaUrl0": "https://example.com/a.jpg", "MediaContentType0": "image/jpeg",
        "MediaUrl1": "https://example.com/b.png", "MediaContentType1": "image/png",
        "OptOutType": "STOP",
    }  # fmt: skip


def test_country_of_is_the_codes_main_region_or_empty() -> None:
    numbers = ("+14155550100", "+447700900123", "anonymous", "+999123", "")
    assert [country_of(n) for n in numbers] == ["US", "GB", "", "", ""]


def test_each_message_gets_a_new_sid_and_no_service_by_default() -> None:
    first = inbound_sms_params(ACCOUNT_SID, "+14155550100", "+15005550006", "a")
    second = inbound_sms_params(ACCOUNT_SID, "nonsense", "+15005550006", "a")
    assert first["MessageSid"] != second["MessageSid"]
    assert first["MessageSid"].startswith("SM") and len(first["MessageSid"]) == 34
    assert "MessagingServiceSid" not in first and "OptOutType" not in first
    assert (second["FromCountry"], second["NumMedia"]) == ("", "0")
