"""Sender policy, rule by rule: a caller-chosen sender, number or Messaging Service, is
used only when it is one of the allowed senders; each refusal names the rule."""

from __future__ import annotations

from typing import Literal

import pytest

from shared.errors import AppError
from shared.phone import PhoneNumber, to_e164
from shared.policy import SmsSender, allowed_countries, call_sender, check_destination, sms_sender
from shared.settings import Settings, load_settings
from tests.conftest import MG_SID, OTHER_FROM, VALID_FROM

OTHER_MG = "MG" + "b" * 32


def settings(**values: str) -> Settings:
    return load_settings({"TWILIO_FROM_NUMBER": VALID_FROM, **values})


def refused(call: object) -> tuple[int, str, dict[str, object]]:
    assert callable(call)
    with pytest.raises(AppError) as raised:
        call()
    return raised.value.status_code, raised.value.detail, raised.value.extra


SENDER_REFUSED = (403, "from is not one of the allowed senders.", {"rule": "sender"})


def test_a_messaging_service_the_caller_chose_must_be_allowed() -> None:
    configured = settings(TWILIO_MESSAGING_SERVICE_SID=MG_SID)
    assert sms_sender(MG_SID, configured) == SmsSender(messaging_service_sid=MG_SID)
    assert refused(lambda: sms_sender(OTHER_MG, configured)) == SENDER_REFUSED
    listed = settings(TWILIO_ALLOWED_SENDERS=OTHER_MG)
    assert sms_sender(OTHER_MG, listed) == SmsSender(messaging_service_sid=OTHER_MG)


def test_a_number_the_caller_chose_must_be_allowed_for_sms_and_calls() -> None:
    plain, listed = settings(), settings(TWILIO_ALLOWED_SENDERS=OTHER_FROM)
    assert refused(lambda: sms_sender(OTHER_FROM, plain)) == SENDER_REFUSED
    assert refused(lambda: call_sender(OTHER_FROM, plain)) == SENDER_REFUSED
    assert sms_sender(OTHER_FROM, listed) == SmsSender(from_number=OTHER_FROM)
    assert call_sender(OTHER_FROM, listed) == OTHER_FROM
    assert call_sender(VALID_FROM, plain) == VALID_FROM  # the configured one is allowed
    assert call_sender(None, plain) == VALID_FROM


def test_without_a_list_the_countries_are_the_senders_or_the_default_regions() -> None:
    assert allowed_countries(settings()) == frozenset({"US"})  # VALID_FROM's
    assert allowed_countries(load_settings({"DEFAULT_REGION": "GB"})) == frozenset({"GB"})
    assert allowed_countries(load_settings({})) == frozenset()
    listed = settings(ALLOWED_COUNTRIES="gb,FR")
    assert allowed_countries(listed) == frozenset({"GB", "FR"})


UK_MOBILE = to_e164("+447400123456")


@pytest.mark.parametrize(
    ("values", "listed"),
    [
        ({"ALLOWED_COUNTRIES": "FR,DE"}, "DE, FR"),
        ({"TWILIO_FROM_NUMBER": ""}, "none configured"),  # no list, no sender, no region
    ],
)
def test_a_destination_country_refusal_lists_the_allowed_ones(
    values: dict[str, str], listed: str
) -> None:
    configured = load_settings({"TWILIO_FROM_NUMBER": VALID_FROM, **values})
    assert refused(lambda: check_destination(UK_MOBILE, configured, "sms")) == (
        403,
        f"Destination country GB is not allowed (allowed: {listed}).",
        {"rule": "destination-country", "country": "GB"},
    )


def test_a_number_of_no_country_is_refused_as_unknown() -> None:
    nowhere = PhoneNumber("+80012345678", None, "toll-free")
    assert refused(lambda: check_destination(nowhere, settings(), "call")) == (
        403,
        "Destination country unknown is not allowed (allowed: US).",
        {"rule": "destination-country", "country": "unknown"},
    )


@pytest.mark.parametrize(
    ("channel", "detail"),
    [
        ("sms", "The destination is a premium-rate number; SMS may go to mobile numbers only."),
        ("call", "The destination is a premium-rate number; Calls may go to "
         "mobile, fixed-line numbers only."),
    ],
)  # fmt: skip
def test_a_number_type_refusal_names_the_channel_and_its_types(
    channel: Literal["sms", "call"], detail: str
) -> None:
    configured = settings(SMS_NUMBER_TYPES="mobile", CALL_NUMBER_TYPES="mobile,fixed-line")
    premium = to_e164("+19005550100")
    assert refused(lambda: check_destination(premium, configured, channel)) == (
        403,
        detail,
        {"rule": "destination-number-type", "numberType": "premium-rate"},
    )
