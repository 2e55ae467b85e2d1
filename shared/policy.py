"""Who may be reached, from which sender, and which TwiML URLs Twilio may be sent to.

These checks are the anti-abuse floor: a leaked function key must not turn the app into
an open relay for premium-rate destinations or for arbitrary TwiML on our account.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from shared.errors import Forbidden, InvalidSetting, MissingSetting
from shared.phone import InvalidPhoneNumber, PhoneNumber, to_e164
from shared.settings import Settings
from shared.urls import parse_public_url

Channel = Literal["sms", "call"]


@dataclass(frozen=True)
class SmsSender:
    from_number: str | None = None
    messaging_service_sid: str | None = None

    @property
    def key(self) -> str:
        """Who the recipient hears from, as Twilio keys opt-outs: the Messaging Service
        when one sends, else the From number."""
        sender = self.messaging_service_sid or self.from_number
        assert sender is not None
        return sender


def allowed_countries(settings: Settings) -> frozenset[str]:
    """Explicit list, or else the default sender's country (or DEFAULT_REGION)."""
    if settings.allowed_countries:
        return frozenset(settings.allowed_countries)
    sender = _configured_number(settings)
    region = sender.region if sender else settings.default_region
    return frozenset({region} if region else ())


def check_destination(number: PhoneNumber, settings: Settings, channel: Channel) -> None:
    """The destination's country, then its number type (premium rate and the like cost
    the account extra): 403 naming the rule and what was refused."""
    if not settings.allow_all_countries:
        allowed = allowed_countries(settings)
        if number.region not in allowed:
            listed = ", ".join(sorted(allowed)) or "none configured"
            raise _refused(
                "destination-country",
                f"Destination country {number.region or 'unknown'} is not allowed "
                f"(allowed: {listed}).",
                title="Destination not allowed",
                country=number.region or "unknown",
            )
    types = settings.sms_number_types if channel == "sms" else settings.call_number_types
    exempt = number.e164.startswith(settings.number_type_exceptions)
    if number.number_type not in types and not exempt:
        kind = "SMS" if channel == "sms" else "Calls"
        raise _refused(
            "destination-number-type",
            f"The destination is a {number.number_type} number; {kind} may go to "
            f"{', '.join(types)} numbers only.",
            title="Destination not allowed",
            numberType=number.number_type,
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


def check_twiml_url(url: str, settings: Settings, *, field: str = "url") -> None:
    """A caller-chosen URL Twilio will fetch (TwiML, or audio to <Play>): unambiguous
    https on a host listed in TWIML_ALLOWED_HOSTS, compared exactly."""
    parsed = parse_public_url(url)
    if parsed is None or parsed.host not in settings.twiml_allowed_hosts:
        raise _refused(
            "twiml-url" if field == "url" else "play-url",
            f"{field} must be an https URL on a host listed in TWIML_ALLOWED_HOSTS, "
            "without user info, backslashes, spaces or control characters.",
            title="URL not allowed",
            field=field,
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
    return _refused("sender", "from is not one of the allowed senders.", title="Sender not allowed")


def _refused(rule: str, detail: str, *, title: str, **extra: str) -> Forbidden:
    return Forbidden(detail, title=title, extra={"rule": rule, **extra})
