"""Who may be reached, from which sender, and which TwiML URLs Twilio may be sent to.

These checks are the anti-abuse floor: a leaked function key must not turn the app into
an open relay for premium-rate destinations or for arbitrary TwiML on our account.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import Forbidden, InvalidSetting, MissingSetting
from shared.phone import InvalidPhoneNumber, PhoneNumber, to_e164
from shared.settings import Settings


@dataclass(frozen=True)
class SmsSender:
    from_number: str | None = None
    messaging_service_sid: str | None = None


def allowed_countries(settings: Settings) -> frozenset[str]:
    """Explicit list, or else the default sender's country (or DEFAULT_REGION)."""
    if settings.allowed_countries:
        return frozenset(settings.allowed_countries)
    sender = _configured_number(settings)
    region = sender.region if sender else settings.default_region
    return frozenset({region} if region else ())


def check_destination(number: PhoneNumber, settings: Settings) -> None:
    if settings.allow_all_countries:
        return
    allowed = allowed_countries(settings)
    if number.region not in allowed:
        listed = ", ".join(sorted(allowed)) or "none configured"
        raise Forbidden(
            f"Destination country {number.region or 'unknown'} is not allowed (allowed: {listed}).",
            title="Destination not allowed",
        )


def sms_sender(requested: str | None, settings: Settings) -> SmsSender:
    """The caller's `from` if it is an allowed sender, else the configured default."""
    if requested is None:
        default = _configured_number(settings)
        if default:
            return SmsSender(from_number=default.e164)
        if settings.messaging_service_sid:
            return SmsSender(messaging_service_sid=settings.messaging_service_sid)
        raise MissingSetting("TWILIO_FROM_NUMBER")
    if requested.startswith("MG"):
        if requested not in _allowed_senders(settings):
            raise _sender_forbidden()
        return SmsSender(messaging_service_sid=requested)
    return SmsSender(from_number=_allowed_number(requested, settings))


def call_sender(requested: str | None, settings: Settings) -> str:
    if requested is None:
        sender = _configured_number(settings)
        if sender is None:
            raise MissingSetting("TWILIO_FROM_NUMBER")
        return sender.e164
    return _allowed_number(requested, settings)


def check_twiml_url(url: str, settings: Settings) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or host not in settings.twiml_allowed_hosts:
        raise Forbidden(
            "url must be https on a host listed in TWIML_ALLOWED_HOSTS.",
            title="TwiML URL not allowed",
        )


def _allowed_number(requested: str, settings: Settings) -> str:
    # Parsing errors were reported as validation errors already; here only policy.
    number = to_e164(requested).e164
    if number not in _allowed_senders(settings):
        raise _sender_forbidden()
    return number


# Settings are immutable and few: parse the configured numbers once, not per request.
@functools.lru_cache(maxsize=8)
def _allowed_senders(settings: Settings) -> frozenset[str]:
    senders = {settings.messaging_service_sid} if settings.messaging_service_sid else set()
    default = _configured_number(settings)
    if default:
        senders.add(default.e164)
    for entry in settings.allowed_senders:  # E.164 or MG SIDs already (load_settings)
        if entry.startswith("MG"):
            senders.add(entry)
            continue
        try:  # E.164 in shape; only phonenumbers knows whether such a number exists
            senders.add(to_e164(entry).e164)
        except InvalidPhoneNumber:
            raise InvalidSetting(
                "TWILIO_ALLOWED_SENDERS", "E.164 numbers or Messaging Service SIDs (MG…)"
            ) from None
    return frozenset(senders)


@functools.lru_cache(maxsize=8)
def _configured_number(settings: Settings) -> PhoneNumber | None:
    if not settings.from_number:
        return None
    try:
        return to_e164(settings.from_number)
    except InvalidPhoneNumber:
        raise InvalidSetting("TWILIO_FROM_NUMBER", "an E.164 phone number") from None


def _sender_forbidden() -> Forbidden:
    return Forbidden("from is not one of the allowed senders.", title="Sender not allowed")
