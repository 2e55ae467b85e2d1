"""Place one voice call whose TwiML is ours (or an allowed https URL). No HTTP in here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import clock, policy, twiml
from shared.deliveries import CALL_EVENTS, remember_created, status_callback_url
from shared.limits import check_before_send
from shared.messaging import parse_number
from shared.phone import PhoneNumber, mask
from shared.settings import Settings
from shared.store import Store
from shared.twilio_client import with_rate_limit_retry
from shared.validation import FieldReader
from shared.webhooks import function_url

TWIML_ROUTE = "TwiML"
_FIELDS = ("to", "from", "message", "voice", "language", "url")

if TYPE_CHECKING:
    from twilio.rest import Client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRequest:
    to: PhoneNumber
    from_number: str
    twiml_url: str


def parse_call_request(fields: Mapping[str, Any], settings: Settings) -> CallRequest:
    reader = FieldReader(fields, _FIELDS)
    raw_to = reader.text("to", required=True, max_length=64)
    raw_from = reader.text("from", max_length=64)
    message = reader.text("message", max_length=twiml.MAX_SAY_CHARACTERS)
    voice = reader.text("voice", max_length=80)
    language = reader.text("language", max_length=35)
    url = reader.text("url", max_length=2048)
    if url is not None and (message or voice or language):
        reader.error("url", "cannot be combined with message, voice or language")
    segment = twiml.message_segment(reader, "message", message) if message is not None else None
    twiml.check_voice_options(reader, voice, language)
    to = parse_number(reader, "to", raw_to, settings)
    parse_number(reader, "from", raw_from, None)
    reader.check()
    assert to is not None
    sender = policy.call_sender(raw_from, settings)
    policy.check_destination(to, settings, "call")
    if url is not None:
        policy.check_twiml_url(url, settings)
    if segment is not None and segment.kind == "play":
        policy.check_twiml_url(segment.value, settings, field="message")
    if url is None:
        query = {"message": message, "voice": voice, "language": language}
        url = function_url(settings, TWIML_ROUTE, {k: v for k, v in query.items() if v})
    return CallRequest(to=to, from_number=sender, twiml_url=url)


def place_call(
    request: CallRequest, settings: Settings, client: Client, store: Store, caller: str
) -> dict[str, Any]:
    to = request.to.e164
    check_before_send(store, settings, caller=caller, destination=to, sms=False, now=clock.now())
    options: dict[str, Any] = {"to": to, "from_": request.from_number, "url": request.twiml_url}
    callback = status_callback_url(settings)
    if callback:
        options.update(status_callback=callback, status_callback_event=list(CALL_EVENTS))
    call = with_rate_limit_retry(settings, lambda: client.calls.create(**options))
    logger.info("Call %s to %s: %s", call.sid, mask(to), call.status)
    remember_created(store, "call", call.sid, caller=caller, to=to, status=call.status)
    # twilio-python names this attribute `_from` on calls (but `from_` on messages).
    return {"sid": call.sid, "status": call.status, "to": call.to, "from": call._from}
