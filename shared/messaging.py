"""Send one SMS/MMS: validate, apply policy, create it at Twilio. No HTTP in here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twilio.base.exceptions import TwilioRestException

from shared import clock, policy
from shared.deliveries import remember_created, status_callback_url
from shared.limits import OPTED_OUT_CODE, check_before_send
from shared.phone import InvalidPhoneNumber, PhoneNumber, mask, to_e164
from shared.settings import Settings
from shared.store import Store, StoreUnavailable
from shared.twilio_client import with_rate_limit_retry
from shared.urls import parse_public_url
from shared.validation import FieldReader

MAX_BODY_CHARACTERS = 1600  # Twilio's limit for one message body
MAX_MEDIA = 10  # Twilio's limit of media per MMS
_FIELDS = ("to", "body", "from", "mediaUrl")

if TYPE_CHECKING:
    from twilio.rest import Client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmsRequest:
    to: PhoneNumber
    body: str | None
    sender: policy.SmsSender
    media_urls: tuple[str, ...] = ()


def parse_sms_request(fields: Mapping[str, Any], settings: Settings) -> SmsRequest:
    """Validate every field (all errors at once), then the destination and sender policy."""
    reader = FieldReader(fields, _FIELDS)
    raw_to = reader.text("to", required=True, max_length=64)
    body = reader.text("body", max_length=MAX_BODY_CHARACTERS)
    raw_from = reader.text("from", max_length=64)
    media = reader.text_list("mediaUrl", max_items=MAX_MEDIA, max_length=2048)
    if body is None and not media and "body" not in {e["field"] for e in reader.errors}:
        reader.error("body", "is required unless mediaUrl is given")
    if any(parse_public_url(url, schemes=("http", "https")) is None for url in media):
        reader.error("mediaUrl", "must be http(s) URLs without user info, backslashes or spaces")
    to = parse_number(reader, "to", raw_to, settings)
    if raw_from is not None and not raw_from.startswith("MG"):
        parse_number(reader, "from", raw_from, None)
    reader.check()
    assert to is not None
    sender = policy.sms_sender(raw_from, settings)
    policy.check_destination(to, settings, "sms")
    return SmsRequest(to=to, body=body, sender=sender, media_urls=media)


def send_sms(
    request: SmsRequest,
    settings: Settings,
    client: Client,
    store: Store,
    caller: str,
    *,
    charge_caller: bool = True,
) -> dict[str, Any]:
    """Send it after opt-out and limit checks; `charge_caller=False` when the caller's
    quota was charged already (a broadcast pays for all its recipients up front)."""
    to = request.to.e164
    check_before_send(
        store,
        settings,
        caller=caller if charge_caller else None,
        destination=to,
        sms=True,
        now=clock.now(),
    )
    options: dict[str, Any] = {"to": to}
    if request.body is not None:
        options["body"] = request.body
    if request.media_urls:
        options["media_url"] = list(request.media_urls)
    if request.sender.messaging_service_sid:
        options["messaging_service_sid"] = request.sender.messaging_service_sid
    else:
        options["from_"] = request.sender.from_number
    callback = status_callback_url(settings)
    if callback:
        options["status_callback"] = callback
    try:
        message = with_rate_limit_retry(settings, lambda: client.messages.create(**options))
    except TwilioRestException as exc:
        if exc.code == OPTED_OUT_CODE:
            _remember_opt_out(store, to)
        raise
    logger.info("SMS %s to %s: %s", message.sid, mask(to), message.status)
    remember_created(store, "message", message.sid, caller=caller, to=to, status=message.status)
    return {
        "sid": message.sid,
        "status": message.status,
        "to": message.to,
        "from": message.from_,
        "messagingServiceSid": message.messaging_service_sid,
        "numSegments": _int_or_none(message.num_segments),
        "dateCreated": message.date_created.isoformat() if message.date_created else None,
    }


def _remember_opt_out(store: Store, number: str) -> None:
    try:
        store.add_opt_out(number)
    except StoreUnavailable:
        logger.error("Could not record the opt-out of %s", mask(number))


def parse_number(
    reader: FieldReader, field: str, raw: str | None, settings: Settings | None
) -> PhoneNumber | None:
    """E.164 for `raw`, recording a field error instead of raising."""
    if raw is None:
        return None
    try:
        return to_e164(raw, settings.default_region if settings else None)
    except InvalidPhoneNumber as exc:
        reader.error(field, str(exc))
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
