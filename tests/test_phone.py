from __future__ import annotations

import phonenumbers
import pytest

from shared.phone import InvalidPhoneNumber, PhoneNumber, mask, to_e164


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550100", None, PhoneNumber("+14155550100", "US", "fixed-line-or-mobile")),
        (" +1 (415) 555-0100 ", None, PhoneNumber("+14155550100", "US", "fixed-line-or-mobile")),
        ("(415) 555-0100", "US", PhoneNumber("+14155550100", "US", "fixed-line-or-mobile")),
        ("020 7946 0000", "GB", PhoneNumber("+442079460000", "GB", "fixed-line")),
        ("+442079460000", "US", PhoneNumber("+442079460000", "GB", "fixed-line")),
        ("+33 6 12 34 56 78", None, PhoneNumber("+33612345678", "FR", "mobile")),
        ("+1 900 555 0100", None, PhoneNumber("+19005550100", "US", "premium-rate")),
        ("+44 871 234 5678", None, PhoneNumber("+448712345678", "GB", "premium-rate")),
        ("+1 800 555 0100", None, PhoneNumber("+18005550100", "US", "toll-free")),
    ],
)
def test_numbers_are_normalised_to_e164(
    raw: str, region: str | None, expected: PhoneNumber
) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("4155550100", None, "must be in E.164 format, e.g. +14155550100"),
        ("+1555", None, "is not a valid phone number"),
        ("+15551234567", None, "is not a valid phone number"),
        ("hello", "US", "is not a phone number"),
        ("", "US", "is not a phone number"),
        # After a "+" comes the country code: not the region's dialling prefix (00 in GB).
        ("+00 44 20 7946 0000", "GB", "is not a phone number"),
    ],
)
def test_invalid_numbers_say_why(raw: str, region: str | None, message: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as raised:
        to_e164(raw, region)
    assert str(raised.value) == message


def test_mask_keeps_country_prefix_and_last_two_digits() -> None:
    assert mask("+14155550100") == "+14*******00"
    assert mask("+1234") == "*****"
    assert mask("+12345") == "******"  # six characters or fewer: none shown
    assert mask("+123456") == "+12**56"
    assert mask(None) == mask("") == "-"


def test_a_number_type_phonenumbers_adds_later_is_named_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not one of NUMBER_TYPES, so no SMS_NUMBER_TYPES or CALL_NUMBER_TYPES lets it through.
    monkeypatch.setattr(phonenumbers, "number_type", lambda number: 42)
    assert to_e164("+14155550100") == PhoneNumber("+14155550100", "US", "unknown")
