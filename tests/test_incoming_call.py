"""Inbound calls through the IncomingCall blueprint: the TwiML of each branch, signatures on
every route, voicemails stored once, forward numbers under the money policy, hostile input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from shared.errors import InvalidSetting
from shared.inbound_calls import check_settings
from shared.settings import get_settings, load_settings
from shared.state import get_store
from shared.voicemail import Voicemail
from tests.conftest import (
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    VALID_FROM,
    VALID_TO,
    FakeClock,
    Handler,
    SetEnv,
    body_of,
    build_request,
)

API = f"{PUBLIC_BASE_URL}/api"
URLS = {
    "IncomingCall": f"{API}/IncomingCall",
    "IncomingCallDialAction": f"{API}/IncomingCall/DialAction",
    "IncomingCallRecordAction": f"{API}/IncomingCall/RecordAction",
    "RecordingStatus": f"{API}/IncomingCall/RecordingStatus",
}
XML = '<?xml version="1.0" encoding="UTF-8"?>'
GREETING = "Sorry, no one can take your call. Please leave a message after the tone."
RECORD = (
    f'<Record action="{API}/IncomingCall/RecordAction" maxLength="120" method="POST" '
    f'recordingStatusCallback="{API}/IncomingCall/RecordingStatus" '
    'recordingStatusCallbackMethod="POST" />'
)
VOICEMAIL = f'{XML}<Response><Say voice="woman">{GREETING}</Say>{RECORD}<Hangup /></Response>'
HANGUP = f"{XML}<Response><Hangup /></Response>"
CALL_SID = "CA" + "1" * 32
RECORDING_SID = "RE" + "2" * 32
CALLER = "+14155550123"
VALIDATOR = RequestValidator(AUTH_TOKEN)


@pytest.fixture
def fns(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> dict[str, Handler]:
    return functions


def inbound(**extra: str) -> dict[str, str]:
    """Twilio's parameters for a call ringing one of the account's numbers."""
    return {
        "CallSid": CALL_SID, "AccountSid": "AC" + "0" * 32, "From": CALLER, "To": VALID_FROM,
        "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
        "Caller": CALLER, "Called": VALID_FROM, "FromCountry": "US", "ToCountry": "US", **extra,
    }  # fmt: skip


def recording(status: str = "completed", **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0" * 32, "CallSid": CALL_SID, "RecordingSid": RECORDING_SID,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Recordings/{RECORDING_SID}",
        "RecordingStatus": status, "RecordingDuration": "7", "RecordingChannels": "1",
        "RecordingSource": "RecordVerb", **extra,
    }  # fmt: skip


def post(
    fns: dict[str, Handler], name: str, form: Mapping[str, str], *, signature: str | None = None
) -> func.HttpResponse:
    url = URLS[name]
    sig = VALIDATOR.compute_signature(url, dict(form)) if signature is None else signature
    headers = {"X-Twilio-Signature": sig} if sig else {}
    return fns[name](build_request("POST", url, form=form, headers=headers))


def twiml_of(response: func.HttpResponse) -> tuple[int, str | None, str]:
    return response.status_code, response.mimetype, response.get_body().decode()


def stored() -> list[Voicemail]:
    return get_store(get_settings()).voicemails(10)


# The TwiML of each branch ---------------------------------------------------------------


def test_without_a_forward_number_the_caller_gets_voicemail(fns: dict[str, Handler]) -> None:
    assert twiml_of(post(fns, "IncomingCall", inbound())) == (200, "application/xml", VOICEMAIL)


def test_a_voice_url_set_to_get_works_too(fns: dict[str, Handler]) -> None:
    url = f"{URLS['IncomingCall']}?{urlencode(inbound())}"
    signature = VALIDATOR.compute_signature(url, {})
    response = fns["IncomingCall"](
        build_request("GET", url, headers={"X-Twilio-Signature": signature})
    )
    assert twiml_of(response) == (200, "application/xml", VOICEMAIL)


def test_with_a_forward_number_the_call_is_dialled_first(
    fns: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(INBOUND_FORWARD_NUMBER=VALID_TO, INBOUND_DIAL_TIMEOUT_SECONDS="25")
    assert twiml_of(post(fns, "IncomingCall", inbound())) == (
        200,
        "application/xml",
        f'{XML}<Response><Dial action="{API}/IncomingCall/DialAction" method="POST" '
        f'timeout="25">{VALID_TO}</Dial></Response>',
    )


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed", "canceled"])
def test_a_forward_nobody_answered_goes_to_voicemail(fns: dict[str, Handler], status: str) -> None:
    form = inbound(CallStatus="in-progress", DialCallStatus=status)
    assert twiml_of(post(fns, "IncomingCallDialAction", form)) == (
        200,
        "application/xml",
        VOICEMAIL,
    )


@pytest.mark.parametrize("status", ["completed", "answered"])
def test_an_answered_forward_hangs_up_after_the_conversation(
    fns: dict[str, Handler], status: str
) -> None:
    form = inbound(CallStatus="in-progress", DialCallStatus=status, DialCallDuration="42")
    assert twiml_of(post(fns, "IncomingCallDialAction", form)) == (200, "application/xml", HANGUP)


def test_transcription_is_asked_for_only_when_configured(
    fns: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(VOICEMAIL_TRANSCRIBE="true", VOICEMAIL_MAX_SECONDS="60", TWIML_DEFAULT_VOICE="man")
    assert twiml_of(post(fns, "IncomingCall", inbound())) == (
        200,
        "application/xml",
        f'{XML}<Response><Say voice="man">{GREETING}</Say>'
        f'<Record action="{API}/IncomingCall/RecordAction" maxLength="60" method="POST" '
        f'recordingStatusCallback="{API}/IncomingCall/RecordingStatus" '
        'recordingStatusCallbackMethod="POST" transcribe="true" /><Hangup /></Response>',
    )


def test_a_greeting_url_is_played_and_text_is_escaped(
    fns: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(VOICEMAIL_GREETING="Tom & Jerry <can't> talk")
    xml = post(fns, "IncomingCall", inbound()).get_body().decode()
    assert xml.startswith(
        f'{XML}<Response><Say voice="woman">Tom &amp; Jerry &lt;can\'t&gt; talk</Say>'
    )
    app_env(
        VOICEMAIL_GREETING="https://media.example.com/hello.mp3",
        TWIML_ALLOWED_HOSTS="media.example.com",
    )
    xml = post(fns, "IncomingCall", inbound()).get_body().decode()
    assert xml == (
        f"{XML}<Response><Play>https://media.example.com/hello.mp3</Play>{RECORD}<Hangup /></Response>"
    )


def test_the_record_action_remembers_who_called_and_hangs_up(fns: dict[str, Handler]) -> None:
    form = inbound(CallStatus="in-progress", RecordingSid=RECORDING_SID, RecordingDuration="7")
    assert twiml_of(post(fns, "IncomingCallRecordAction", form)) == (
        200,
        "application/xml",
        HANGUP,
    )
    assert stored() == []  # who called is no voicemail until a recording's callback says so
    assert post(fns, "RecordingStatus", recording()).status_code == 204
    [voicemail] = stored()
    assert (voicemail.from_number, voicemail.to_number) == (CALLER, VALID_FROM)


# Recording status callbacks ---------------------------------------------------------------


def test_a_recording_is_stored_once_however_often_it_is_delivered(
    fns: dict[str, Handler], fake_clock: FakeClock
) -> None:
    first = post(fns, "RecordingStatus", recording())
    assert (first.status_code, first.get_body()) == (204, b"")
    fake_clock.advance(5)
    assert post(fns, "RecordingStatus", recording()).status_code == 204
    assert post(fns, "RecordingStatus", recording(RecordingDuration="8")).status_code == 204
    assert stored() == [
        Voicemail(
            call_sid=CALL_SID,
            recording_sid=RECORDING_SID,
            status="completed",
            at=stored()[0].at,
            url=recording()["RecordingUrl"],
            duration=7,
        )
    ]


def test_a_failed_recording_keeps_its_error_and_an_unknown_status_is_not_stored(
    fns: dict[str, Handler],
) -> None:
    assert post(fns, "RecordingStatus", recording("mystery")).status_code == 204
    assert stored() == []
    form = recording("failed", ErrorCode="13617")
    del form["RecordingUrl"]
    assert post(fns, "RecordingStatus", form).status_code == 204
    [voicemail] = stored()
    assert (voicemail.status, voicemail.url, voicemail.error_code) == ("failed", None, 13617)


# Signatures on every route ----------------------------------------------------------------

ROUTE_FORMS = [
    ("IncomingCall", inbound()),
    ("IncomingCallDialAction", inbound(DialCallStatus="no-answer")),
    ("IncomingCallRecordAction", inbound(RecordingSid=RECORDING_SID)),
    ("RecordingStatus", recording()),
]


@pytest.mark.parametrize(("name", "form"), ROUTE_FORMS)
@pytest.mark.parametrize(
    ("signature", "detail"),
    [
        ("", "Missing X-Twilio-Signature header."),
        ("bm90IGEgc2lnbmF0dXJl", "X-Twilio-Signature does not match this request."),
        ("tampered", "X-Twilio-Signature does not match this request."),
    ],
)
def test_an_unsigned_or_forged_request_is_403_naming_the_rule(
    fns: dict[str, Handler], name: str, form: dict[str, str], signature: str, detail: str
) -> None:
    if signature == "tampered":  # signed, then one parameter changed
        signature = VALIDATOR.compute_signature(URLS[name], form)
        form = {**form, "From": "+14155550999"}
    response = post(fns, name, form, signature=signature)
    assert (response.status_code, body_of(response)) == (
        403,
        {
            "type": "urn:twilio-functions:problem:forbidden",
            "title": "Invalid Twilio signature",
            "status": 403,
            "detail": detail,
            "rule": "twilio-signature",
        },
    )
    assert stored() == []


# Forward numbers pass the money policy ------------------------------------------------------


def test_a_premium_rate_forward_is_a_misconfiguration_never_a_call(
    fns: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(INBOUND_FORWARD_NUMBER="+19005550100")
    response = post(fns, "IncomingCall", inbound())
    assert (response.status_code, body_of(response)) == (
        500,
        {
            "type": "urn:twilio-functions:problem:misconfigured",
            "title": "Server misconfigured",
            "status": 500,
            "detail": "The server is misconfigured: setting INBOUND_FORWARD_NUMBER must be a "
            "number calls may go to (The destination is a premium-rate number; Calls may go "
            "to mobile, fixed-line, fixed-line-or-mobile numbers only.).",
            "setting": "INBOUND_FORWARD_NUMBER",
            "rule": "destination-number-type",
        },
    )


@pytest.mark.parametrize(
    ("environ", "rule"),
    [
        ({"INBOUND_FORWARD_NUMBER": "+448712345678", "ALLOWED_COUNTRIES": "GB"}, "destination-number-type"),
        ({"INBOUND_FORWARD_NUMBER": "+442071838750", "TWILIO_FROM_NUMBER": VALID_FROM}, "destination-country"),
        ({"INBOUND_FORWARD_NUMBER": "+14155550100", "CALL_NUMBER_TYPES": "mobile", "DEFAULT_REGION": "US"}, "destination-number-type"),
    ],
)  # fmt: skip
def test_the_forward_number_is_checked_at_start_like_a_call_destination(
    environ: dict[str, str], rule: str
) -> None:
    with pytest.raises(InvalidSetting) as raised:
        check_settings(load_settings(environ))
    assert (raised.value.key, raised.value.extra["rule"]) == ("INBOUND_FORWARD_NUMBER", rule)
    assert environ["INBOUND_FORWARD_NUMBER"] not in raised.value.detail


def test_an_allowed_forward_passes_and_test_numbers_pass_where_exempt() -> None:
    check_settings(
        load_settings({"INBOUND_FORWARD_NUMBER": "+14155550100", "DEFAULT_REGION": "US"})
    )
    check_settings(
        load_settings({"INBOUND_FORWARD_NUMBER": "+15005550006", "NUMBER_TYPE_EXCEPTIONS": "+1500555", "DEFAULT_REGION": "US"})
    )  # fmt: skip
    check_settings(load_settings({}))  # no forward: nothing to check


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INBOUND_FORWARD_NUMBER", "4155550199"),
        ("INBOUND_FORWARD_NUMBER", "+1 415 555 0100"),
        ("INBOUND_DIAL_TIMEOUT_SECONDS", "4"),
        ("INBOUND_DIAL_TIMEOUT_SECONDS", "601"),
        ("INBOUND_DIAL_TIMEOUT_SECONDS", "20.5"),
        ("VOICEMAIL_MAX_SECONDS", "-3"),
        ("VOICEMAIL_MAX_SECONDS", "14401"),
        ("VOICEMAIL_TRANSCRIBE", "sometimes"),
        ("VOICEMAIL_GREETING", "a" * 4097),
        ("VOICEMAIL_GREETING", "bell\x07"),
        ("VOICEMAIL_GREETING", "https://evil.example/greeting.mp3"),
        ("VOICEMAIL_GREETING", "http://"),
    ],
)
def test_inbound_settings_are_validated_naming_the_key_not_the_value(key: str, value: str) -> None:
    with pytest.raises(InvalidSetting) as raised:
        load_settings({key: value})
    assert raised.value.key == key
    assert value not in raised.value.detail


def test_transcription_needs_recordings_twilio_can_transcribe() -> None:
    with pytest.raises(InvalidSetting) as raised:
        load_settings({"VOICEMAIL_TRANSCRIBE": "true", "VOICEMAIL_MAX_SECONDS": "121"})
    assert raised.value.detail == (
        "The server is misconfigured: setting VOICEMAIL_TRANSCRIBE must be false while "
        "VOICEMAIL_MAX_SECONDS is over 120."
    )
    assert load_settings(
        {"VOICEMAIL_TRANSCRIBE": "yes", "VOICEMAIL_MAX_SECONDS": "120"}
    ).voicemail_transcribe


# Hostile input: 4xx, never 5xx, nothing stored ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "form", "errors"),
    [
        ("RecordingStatus", {k: v for k, v in recording().items() if k != "CallSid"},
         [{"field": "CallSid", "message": "is required"}]),
        ("RecordingStatus", recording(RecordingSid="RE../../x"),
         [{"field": "RecordingSid", "message": "is not in the form Twilio sends"}]),
        ("RecordingStatus", recording(RecordingUrl="javascript:alert(1)"),
         [{"field": "RecordingUrl", "message": "is not in the form Twilio sends"}]),
        ("RecordingStatus", recording(RecordingDuration="-1", CallSid="CA1"),
         [{"field": "CallSid", "message": "is not in the form Twilio sends"},
          {"field": "RecordingDuration", "message": "is not in the form Twilio sends"}]),
        ("IncomingCallDialAction", inbound(),
         [{"field": "DialCallStatus", "message": "is required"}]),
        ("IncomingCallRecordAction", inbound(CallSid="CA" + "z" * 32, From="a b"),
         [{"field": "CallSid", "message": "is not in the form Twilio sends"},
          {"field": "From", "message": "is not in the form Twilio sends"}]),
    ],
)  # fmt: skip
def test_malformed_callbacks_are_400_listing_every_field(
    fns: dict[str, Handler], name: str, form: dict[str, str], errors: list[dict[str, str]]
) -> None:
    response = post(fns, name, form)
    assert (response.status_code, body_of(response)["errors"]) == (400, errors)
    assert stored() == []


def test_a_repeated_field_is_400(fns: dict[str, Handler]) -> None:
    url = URLS["RecordingStatus"]
    form: dict[str, str | list[str]] = {
        **recording(),
        "RecordingSid": [RECORDING_SID, "RE" + "3" * 32],
    }
    body = urlencode(form, doseq=True)
    signature = VALIDATOR.compute_signature(url, MultiDict(parse_qsl(body)))
    response = fns["RecordingStatus"](
        build_request("POST", url, body=body.encode(), headers={
            "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded",
        })
    )  # fmt: skip
    assert (response.status_code, body_of(response)["errors"]) == (
        400,
        [{"field": "RecordingSid", "message": "must be given once"}],
    )


@pytest.mark.parametrize("name", list(URLS))
def test_a_body_over_the_webhook_limit_is_413_before_parsing(
    fns: dict[str, Handler], name: str
) -> None:
    body = b"a=" + b"x" * (64 * 1024)
    response = fns[name](
        build_request("POST", URLS[name], body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    )  # fmt: skip
    assert (response.status_code, body_of(response)["rule"]) == (413, "body-size")


@pytest.mark.parametrize("name", list(URLS))
def test_other_methods_are_405(fns: dict[str, Handler], name: str) -> None:
    response = fns[name](build_request("DELETE", URLS[name]))
    assert response.status_code == 405


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["IncomingCallDialAction", "IncomingCallRecordAction", "RecordingStatus"]),
    form=st.dictionaries(
        st.sampled_from(
            ["CallSid", "RecordingSid", "RecordingStatus", "RecordingUrl", "RecordingDuration",
             "ErrorCode", "DialCallStatus", "From", "To", "x"]
        ),
        st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from([CALL_SID, RECORDING_SID, "completed", "no-answer", "https://x.example/a", "99999999999"]),
        max_size=8,
    ),
)  # fmt: skip
def test_no_signed_form_makes_a_route_answer_5xx(
    fns: dict[str, Handler], name: str, form: dict[str, Any]
) -> None:
    response = post(fns, name, form)
    assert response.status_code < 500, (form, response.get_body())
