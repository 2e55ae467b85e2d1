"""Sender policy, rule by rule: a caller-chosen sender, number or Messaging Service, is
used only when it is one of the allowed senders; each refusal names the rule."""

from __future__ import annotations

import pytest

from shared.errors import AppError
from shared.policy import SmsSender, call_sender, sms_sender
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
