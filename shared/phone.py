"""Phone numbers: E.164 normalisation and number types with phonenumbers; masking for logs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

# phonenumbers' PhoneNumberType names, as settings and problem bodies spell them.
NUMBER_TYPES = (
    "fixed-line", "mobile", "fixed-line-or-mobile", "toll-free", "premium-rate", "shared-cost",
    "voip", "personal-number", "pager", "uan", "voicemail", "unknown",
)  # fmt: skip


class InvalidPhoneNumber(ValueError):
    """The text is not a valid phone number (the message is safe to show the caller)."""


@dataclass(frozen=True)
class PhoneNumber:
    e164: str
    region: str | None  # ISO 3166 region; None for non-geographic numbers
    number_type: str = "unknown"  # one of NUMBER_TYPES


def to_e164(raw: str, default_region: str | None = None) -> PhoneNumber:
    """Normalise a number to E.164; national formats need a default region."""
    # Imported here: its metadata costs a cold TwiML request ~20 ms it has no use for.
    import phonenumbers

    text = raw.strip()
    if not text.startswith("+") and default_region is None:
        raise InvalidPhoneNumber("must be in E.164 format, e.g. +14155550100")
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber("is not a phone number") from None
    # A number is valid exactly when its type is known (is_valid_number is that test), so
    # the type is worked out once: it is the costliest step of a SendSms of our own.
    number_type = phonenumbers.number_type(parsed)
    if number_type == phonenumbers.PhoneNumberType.UNKNOWN:
        raise InvalidPhoneNumber("is not a valid phone number")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return PhoneNumber(
        e164=e164,
        region=phonenumbers.region_code_for_number(parsed),
        number_type=_type_name(number_type),
    )


def _type_name(number_type: int) -> str:
    return _type_names().get(number_type, "unknown")


@functools.cache
def _type_names() -> dict[int, str]:
    import phonenumbers

    return {
        value: name.lower().replace("_", "-")
        for name, value in vars(phonenumbers.PhoneNumberType).items()
        if name.isupper()
    }


def mask(number: str | None) -> str:
    """Enough of a number to correlate log lines, not enough to identify a person."""
    if not number:
        return "-"
    if len(number) <= 6:
        return "*" * len(number)
    return f"{number[:3]}{'*' * (len(number) - 5)}{number[-2:]}"
