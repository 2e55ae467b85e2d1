"""Send one SMS/MMS: validate, apply policy, create it at Twilio. No HTTP in here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twilio.base.exceptions import TwilioRestException

from shared import clock, conversations, parallel, policy
from shared.deliveries import remember_created, status_callback_url
from shared.limits import OPTED_OUT_CODE, check_before_send
from shared.phone import InvalidPhoneNumber, PhoneNumber, mask, to_e164
from shared.reconcile import content_digest, find_created
from shared.settings import Settings
from shared.store import Accepted, Attempt, ConversationMessage, Store, StoreUnavailable
from shared.twilio_client import with_rate_limit_retry
from shared.urls import parse_public_url
from shared.validation import Errors, decode

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
    from shared.shapes import SendSmsRequest  # msgspec only where a body is parsed

    errors = Errors()
    values = decode(fields, SendSmsRequest, errors)
    raw_media = values.get("mediaUrl")
    media = (raw_media,) if isinstance(raw_media, str) else tuple(raw_media or ())
    if values.get("body") is None and not media and not errors.has("body"):
        errors.error("body", "is required unless mediaUrl is given")
    if any(parse_public_url(url, schemes=("http", "https")) is None for url in media):
        errors.error("mediaUrl", "must be http(s) URLs without user info, backslashes or spaces")
    to = parse_number(errors, "to", values.get("to"), settings)
    raw_from = values.get("from_")
    if raw_from is not None and not raw_from.startswith("MG"):
        parse_number(errors, "from", raw_from, None)
    errors.check()
    body = SendSmsRequest(**values)
    assert to is not None
    sender = policy.sms_sender(body.from_, settings)
    policy.check_destination(to, settings, "sms")
    return SmsRequest(to=to, body=body.body, sender=sender, media_urls=media)


def intent(request: SmsRequest) -> Attempt:
    """What sending `request` asks Twilio for, to recognise it later in Twilio's list."""
    sender = request.sender.key
    return Attempt("message", request.to.e164, sender, content_digest(request.body), 0.0, "")


def send_sms(
    request: SmsRequest,
    settings: Settings,
    client: Client,
    store: Store,
    caller: str,
    *,
    charge_caller: bool = True,
    attempt: Attempt | None = None,
) -> Accepted:
    """Send it after opt-out and limit checks; `charge_caller=False` when the caller's
    quota was charged already (a broadcast pays for all its recipients up front).
    `attempt` is the Idempotency-Key attempt this send is, if any."""
    to = request.to.e164
    check_before_send(
        store,
        settings,
        caller=caller if charge_caller else None,
        destination=to,
        sms_sender=request.sender.key,
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
            _remember_opt_out(store, to, request.sender.key)
        raise
    logger.info("SMS %s to %s: %s", message.sid, mask(to), message.status)
    return remember_sent(store, message, caller, attempt, request.media_urls)


def find_sent(client: Client, store: Store, caller: str, attempt: Attempt) -> Accepted | None:
    """The message `attempt` created, if Twilio has it (its answer was lost)."""
    message = find_created(client, store, attempt)
    if message is None:
        return None
    logger.info("SMS %s to %s found at Twilio after a lost answer", message.sid, mask(attempt.to))
    return remember_sent(store, message, caller, attempt)


def remember_sent(
    store: Store,
    message: Any,
    caller: str,
    attempt: Attempt | None,
    media_urls: tuple[str, ...] = (),
) -> Accepted:
    """The answer for `message`, and the writes recording who sent it (under which key)
    and adding it to the caller's conversation with the recipient, side by side."""
    from shared.shapes import SmsResult, answer

    sent = ConversationMessage(
        sid=message.sid, direction="outbound", from_=message.from_ or "", to=message.to,
        body=message.body or "", at=clock.now(), media=tuple((url, "") for url in media_urls),
        messaging_service_sid=message.messaging_service_sid,
    )  # fmt: skip

    def record() -> None:
        # Two single writes side by side (each catches its own store failure).
        parallel.both(
            lambda: remember_created(
                store, "message", message.sid, caller=caller, to=message.to,
                status=message.status, attempt=attempt.owner if attempt else None,
            ),
            lambda: conversations.remember_sent(store, caller, sent),
            beside=store.remote,
        )  # fmt: skip

    body = answer(
        SmsResult(
            sid=message.sid,
            status=message.status,
            to=message.to,
            from_=message.from_,
            messagingServiceSid=message.messaging_service_sid,
            numSegments=_int_or_none(message.num_segments),
            dateCreated=message.date_created.isoformat() if message.date_created else None,
        )
    )
    return Accepted(body, record)


def _remember_opt_out(store: Store, number: str, sender: str) -> None:
    try:
        store.add_opt_out(number, [sender])
    except StoreUnavailable:
        logger.error("Could not record the opt-out of %s", mask(number))


def parse_number(
    errors: Errors, field: str, raw: str | None, settings: Settings | None
) -> PhoneNumber | None:
    """E.164 for `raw`, recording a field error instead of raising."""
    if raw is None:
        return None
    try:
        return to_e164(raw, settings.default_region if settings else None)
    except InvalidPhoneNumber as exc:
        errors.error(field, str(exc))
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
