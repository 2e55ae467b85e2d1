"""The phone texts back: an inbound SMS as Twilio handles it, in the sandbox.

Twilio receives the text on one of the account's numbers, applies its own opt-out handling
(on by default: STOP opts the phone out of that sender, the Messaging Service when the
number belongs to one, and Twilio answers the keyword itself), creates the inbound Message
resource, posts the signed incoming-message webhook (devhost.phone) to the URL configured
for the number, and sends whatever `<Message>` the answer's TwiML holds, except to a
keyword. The keyword list is Twilio's, kept here apart from the app's on purpose: the
sandbox must not share the app's mistakes.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from devhost.phone import WebhookAnswer, inbound_sms_params, post_webhook

# Twilio's default keywords (help.twilio.com: "Twilio support for opt-out keywords").
_TWILIO_KEYWORDS = {
    **dict.fromkeys(
        ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"], "STOP"
    ),
    **dict.fromkeys(["START", "YES", "UNSTOP"], "START"),
    **dict.fromkeys(["HELP", "INFO"], "HELP"),
}
# What Twilio answers to each by default (the same article).
TWILIO_REPLIES = {
    "STOP": "You have successfully been unsubscribed. You will not receive any more messages "
    "from this number. Reply START to resubscribe.",
    "START": "You have successfully been re-subscribed to messages from this number. Reply HELP "
    "for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "HELP": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}


@dataclass(frozen=True)
class Line:
    """Which of the account's senders the phone writes to."""

    number: str
    service: str | None  # the Messaging Service the number belongs to, if any

    @property
    def key(self) -> str:
        """What Twilio keys this sender's opt-outs by."""
        return self.service or self.number


def twilio_keyword(body: str) -> str | None:
    return _TWILIO_KEYWORDS.get(body.strip().upper())


def line_to(messages: list[dict[str, Any]], phone: str, fallback: str) -> Line:
    """The sender that last texted `phone` (a reply goes back to it), else `fallback`."""
    for message in reversed(messages):
        if message["to"] == phone and message["direction"] != "inbound":
            return Line(message["from"] or fallback, message["messaging_service_sid"])
    return Line(fallback, None)


def inbound_message(account: str, sid: str, phone: str, line: Line, body: str) -> dict[str, Any]:
    """The Message resource Twilio creates for a received text."""
    now = format_datetime(datetime.now(UTC), usegmt=True)
    return {
        "account_sid": account, "api_version": "2010-04-01", "body": body,
        "date_created": now, "date_sent": now, "date_updated": now, "direction": "inbound",
        "error_code": None, "error_message": None, "from": phone,
        "messaging_service_sid": line.service, "num_media": "0", "num_segments": "1",
        "price": None, "price_unit": "USD", "sid": sid, "status": "received",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
        "to": line.number, "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        "media_url": [],
    }  # fmt: skip


async def deliver(url: str, auth_token: str, message: dict[str, Any]) -> WebhookAnswer:
    """Post `message` to the app. Twilio's default opt-out handling sends no OptOutType
    (only Advanced Opt-Out does), so neither does the sandbox."""
    params = inbound_sms_params(
        message["account_sid"], message["from"], message["to"], message["body"],
        sid=message["sid"], messaging_service_sid=message["messaging_service_sid"],
    )  # fmt: skip
    return await post_webhook(url, params, auth_token)


def twiml_messages(answer: WebhookAnswer) -> list[str]:
    """The texts of the `<Message>`s a webhook answered with (none if it is not TwiML)."""
    if answer.status != 200 or "xml" not in answer.content_type:
        return []
    try:
        root = ET.fromstring(answer.body)
    except ET.ParseError:
        return []
    if root.tag != "Response":
        return []
    found = []
    for verb in root.iter("Message"):
        body = verb.find("Body")
        found.append((body.text if body is not None else verb.text) or "")
    return found


def reply_message(account: str, line: Line, phone: str, body: str) -> dict[str, Any]:
    """A message Twilio sends back to the phone (a keyword's answer, or the app's TwiML)."""
    sid = f"SM{uuid.uuid4().hex}"
    message = inbound_message(account, sid, line.number, Line(phone, line.service), body)
    message.update(direction="outbound-reply", status="delivered")
    return message
