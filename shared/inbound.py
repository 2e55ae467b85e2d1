"""A message someone sent to one of our numbers (Twilio's incoming-message webhook).

Stored once per MessageSid, shown in the conversation of every caller that had sent to
that number (shared/conversations.py). Twilio's opt-out keywords take effect at once:
Twilio applies an opt-out per recipient and sender, the sender being the Messaging
Service when the number belongs to one, else the number itself, and answers the keyword
itself (the default opt-out handling, and Advanced Opt-Out): so the app never replies to
one. Any other message gets the configured auto-reply, or nothing.

An auto-reply is a message the account pays for, to a number nobody chose: the sender of
an inbound SMS. So it passes the rules a SendSms to that number would (destination
country and number type, opt-out, LIMIT_PER_DESTINATION) or is not sent: otherwise texts
from premium-rate or foreign numbers (SMS pumping), or another auto-responder answering
ours, would spend money no rule allowed. A repeated delivery gets none: the first answer
carried it, and Twilio would send a second.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

from shared import clock, policy
from shared.errors import AppError, BadRequest
from shared.limits import enforce_limits
from shared.phone import InvalidPhoneNumber, mask, to_e164
from shared.settings import Settings
from shared.store import ConversationMessage, Store, StoreUnavailable

INCOMING_SMS_ROUTE = "IncomingSms"
Keyword = Literal["STOP", "START", "HELP"]
# Twilio's default keywords (help.twilio.com: "Twilio support for opt-out keywords"; the
# Advanced Opt-Out docs add REVOKE and OPTOUT): a keyword is the whole body, in any case,
# spaces around it ignored. "Stop please" is a message, not a keyword.
KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), "STOP"
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "START"),
    **dict.fromkeys(("HELP", "INFO"), "HELP"),
}
# With Advanced Opt-Out (custom keywords, other languages), Twilio says which kind a
# message is in OptOutType: that wins over our list.
OPT_OUT_TYPES: frozenset[str] = frozenset({"STOP", "START", "HELP"})
MAX_BODY = 1600  # Twilio delivers at most 1,600 characters (longer texts are cut)
MAX_MEDIA = 10
MAX_FIELD = 2048
_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")

logger = logging.getLogger(__name__)


def keyword(body: str, opt_out_type: str | None = None) -> Keyword | None:
    """The opt-out keyword `body` is, if it is one (OptOutType, when Twilio sends it, wins)."""
    if opt_out_type and opt_out_type.upper() in OPT_OUT_TYPES:
        return KEYWORDS[opt_out_type.upper()]  # each kind is a keyword of its own kind
    return KEYWORDS.get(body.strip().upper())


def parse_inbound(fields: Mapping[str, Any]) -> ConversationMessage:
    """The message in a webhook's form fields; 400 naming the first field that is wrong."""
    sid = _field(fields, "MessageSid")
    if not _SID.fullmatch(sid):
        raise _bad("MessageSid", "is not a message SID")
    service = _field(fields, "MessagingServiceSid", required=False) or None
    if service is not None and not _SERVICE_SID.fullmatch(service):
        raise _bad("MessagingServiceSid", "is not a Messaging Service SID")
    body = _field(fields, "Body", required=False, limit=MAX_BODY)
    count = _field(fields, "NumMedia", required=False) or "0"
    if not (count.isascii() and count.isdigit() and len(count) <= 2 and int(count) <= MAX_MEDIA):
        raise _bad("NumMedia", f"must be a number from 0 to {MAX_MEDIA}")
    media = tuple(
        (_field(fields, f"MediaUrl{i}"), _field(fields, f"MediaContentType{i}", required=False))
        for i in range(int(count))
    )
    return ConversationMessage(
        sid=sid, direction="inbound", from_=_field(fields, "From", limit=64),
        to=_field(fields, "To", limit=64), body=body, at=clock.now(), media=media,
        messaging_service_sid=service,
    )  # fmt: skip


def receive_sms(store: Store, settings: Settings, fields: Mapping[str, Any]) -> str:
    """Store the message and apply its keyword; the TwiML to answer Twilio with."""
    from twilio.twiml.messaging_response import MessagingResponse

    message = parse_inbound(fields)
    kind = keyword(message.body, _field(fields, "OptOutType", required=False) or None)
    # Both keys: a send names either the service or the number, and Twilio blocks both.
    senders = [s for s in (message.messaging_service_sid, message.to) if s]
    # Mistakes must fall on the side of not sending. STOP is applied before the message
    # is stored, and again on a repeat: if storing fails, a retry still applies it. START
    # only on its first delivery: a late repeat must not undo a STOP sent after it (if
    # applying it fails after the message was stored, the person texts START again).
    if kind == "STOP":
        store.add_opt_out(message.from_, senders)
    fresh = store.record_inbound_message(message)
    if kind == "START" and fresh:
        store.remove_opt_out(message.from_, senders)
    logger.info(
        "SMS %s from %s%s%s", message.sid, mask(message.from_),
        f" ({kind})" if kind else "", "" if fresh else " (a repeat)",
    )  # fmt: skip
    response = MessagingResponse()
    reply = settings.inbound_sms_auto_reply
    # Never to a keyword: Twilio answers those itself, and a second answer would confuse
    # (and, after STOP, be refused with 21610 anyway).
    if reply and kind is None and fresh and _may_auto_reply(store, settings, message, senders):
        response.message(reply)
    return str(response)


def _may_auto_reply(
    store: Store, settings: Settings, message: ConversationMessage, senders: list[str]
) -> bool:
    """Whether the auto-reply passes what a send to `message.from_` must; charges the
    destination's limit when it does. A refusal is logged, never the webhook's failure."""
    try:
        number = to_e164(message.from_)
        policy.check_destination(number, settings, "sms")
        if any(store.is_opted_out(number.e164, sender) for sender in senders):
            logger.info("No auto-reply to %s (opt-out)", mask(message.from_))
            return False
        enforce_limits(store, settings, caller=None, destination=number.e164, now=clock.now())
    except InvalidPhoneNumber:
        logger.info("No auto-reply to %s: not a phone number", mask(message.from_))
        return False
    except AppError as refused:
        logger.info(
            "No auto-reply to %s (%s): %s",
            mask(message.from_),
            refused.extra.get("rule"),
            refused.detail,
        )
        return False
    except StoreUnavailable:
        logger.warning("No auto-reply to %s: the state store is unavailable", mask(message.from_))
        return False
    return True


def _field(
    fields: Mapping[str, Any], name: str, *, required: bool = True, limit: int = MAX_FIELD
) -> str:
    value = fields.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _bad(name, "is required" if value is None else "must be given once")
    if len(value) > limit:
        raise _bad(name, f"is longer than {limit} characters")
    return value


def _bad(field: str, problem: str) -> BadRequest:
    return BadRequest(f"{field} {problem}.", title="Invalid webhook", extra={"rule": "webhook"})
