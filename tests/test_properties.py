"""Properties that must hold for any input, checked with Hypothesis.

Phone normalisation is stable and total; TwiML rendering never lets text out of its
element; the request fingerprint ignores field order only; the URL a signature is checked
against is PUBLIC_BASE_URL plus the path and the query exactly as sent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from shared.errors import Forbidden, ValidationFailed
from shared.idempotency import request_fingerprint
from shared.phone import NUMBER_TYPES, InvalidPhoneNumber, to_e164
from shared.settings import load_settings
from shared.twiml import render, speech_from_params
from shared.webhooks import public_url, verify_twilio_request
from tests.conftest import build_request

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
TYPES = [t for t in vars(phonenumbers.PhoneNumberType).values() if isinstance(t, int)]


@st.composite
def example_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    region = draw(st.sampled_from(REGIONS))
    number_type = draw(st.sampled_from(TYPES))
    example = phonenumbers.example_number_for_type(region, number_type)
    assume(example is not None and phonenumbers.is_valid_number(example))
    assert example is not None
    return example


@settings(max_examples=300, deadline=None)
@given(number=example_numbers(), style=st.sampled_from(["e164", "international", "national"]))
def test_any_valid_number_in_any_format_normalises_to_one_e164(
    number: phonenumbers.PhoneNumber, style: str
) -> None:
    region = phonenumbers.region_code_for_number(number)
    formats = {
        "e164": phonenumbers.PhoneNumberFormat.E164,
        "international": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        "national": phonenumbers.PhoneNumberFormat.NATIONAL,
    }
    text = phonenumbers.format_number(number, formats[style])
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    normalised = to_e164(text, region)
    assert normalised.e164 == expected
    assert normalised.number_type in NUMBER_TYPES
    assert to_e164(normalised.e164) == normalised  # normalising is idempotent


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40), region=st.sampled_from([None, "US", "GB", "FR"]))
def test_any_text_is_a_number_or_a_refusal_never_a_crash(text: str, region: str | None) -> None:
    try:
        number = to_e164(text, region)
    except InvalidPhoneNumber as exc:
        assert str(exc) in {
            "must be in E.164 format, e.g. +14155550100",
            "is not a phone number",
            "is not a valid phone number",
        }
    else:
        assert number.e164.startswith("+") and number.e164[1:].isdigit()


@settings(max_examples=500, deadline=None)
@given(
    country=st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    digits=st.text(alphabet="0123456789", min_size=4, max_size=13),
)
def test_a_number_is_accepted_exactly_when_phonenumbers_calls_it_valid(
    country: int, digits: str
) -> None:
    # to_e164 tests validity through the number's type (computed once): the same verdict.
    text = f"+{country}{digits}"
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return
    try:
        number = to_e164(text)
    except InvalidPhoneNumber:
        assert not phonenumbers.is_valid_number(parsed)
    else:
        assert phonenumbers.is_valid_number(parsed)
        assert number.e164 == phonenumbers.format_number(
            parsed, phonenumbers.PhoneNumberFormat.E164
        )


def said(xml: str) -> list[tuple[str, str]]:
    return [(verb.tag, verb.text or "") for verb in ET.fromstring(xml)]


@settings(max_examples=400, deadline=None)
@given(text=st.text(min_size=1, max_size=200))
def test_any_message_renders_to_xml_that_says_exactly_it(text: str) -> None:
    try:
        speech = speech_from_params({"message": text}, "default", "woman")
    except ValidationFailed as exc:
        # Refused only for what XML or Twilio cannot take, and said why.
        assert exc.extra["errors"][0]["field"] == "message"
        return
    xml = render(speech)
    verbs = said(xml)  # parses: well-formed whatever the text was
    # Every XML parser turns CR and CRLF into LF (XML 1.0 §2.11): Twilio reads the same.
    read = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith(("http://", "https://")):
        assert verbs == [("Play", read)]
    else:
        assert verbs == [("Say", read)]  # nothing escaped out of its element, nothing lost


@given(
    fields=st.dictionaries(
        st.text(max_size=10), st.text(max_size=10) | st.integers() | st.none(), max_size=6
    )
)
def test_the_fingerprint_ignores_field_order_and_nothing_else(fields: dict[str, Any]) -> None:
    reordered = dict(reversed(list(fields.items())))
    assert request_fingerprint(reordered) == request_fingerprint(fields)
    changed = {**fields, "to": "+14155550100" if fields.get("to") != "+14155550100" else "+1"}
    assert request_fingerprint(changed) != request_fingerprint(fields)


BASE = "https://functions.example.com"
TOKEN = "property-token-0123456789abcdef0123"
query_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(["/api/TwiML", "/api/StatusCallback", "/api/twiml"]),
    pairs=st.lists(st.tuples(query_values, query_values), max_size=5),
    host=st.sampled_from(["internal.azurewebsites.net", "127.0.0.1:7071", "evil.example"]),
    scheme=st.sampled_from(["http", "https"]),
)
def test_signatures_are_checked_over_the_public_url_with_the_query_as_sent(
    path: str, pairs: list[tuple[str, str]], host: str, scheme: str
) -> None:
    raw_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    received = f"{scheme}://{host}{path}" + (f"?{raw_query}" if raw_query else "")
    expected = f"{BASE}{path}" + (f"?{raw_query}" if raw_query else "")
    headers = {"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "http"}
    settings_ = load_settings({"PUBLIC_BASE_URL": BASE, "TWILIO_AUTH_TOKEN": TOKEN})
    assert public_url(build_request("GET", received, headers=headers), settings_) == expected
    signature = RequestValidator(TOKEN).compute_signature(expected, {})
    verify_twilio_request(
        build_request("GET", received, headers={**headers, "X-Twilio-Signature": signature}),
        settings_,
    )
    if raw_query:  # one byte more in the query, and it no longer matches
        with pytest.raises(Forbidden):
            verify_twilio_request(
                build_request(
                    "GET", f"{received}x", headers={**headers, "X-Twilio-Signature": signature}
                ),
                settings_,
            )
