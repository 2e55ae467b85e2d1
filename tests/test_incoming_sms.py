"""IncomingSms: signed like every Twilio webhook, stored once, keywords at once, exact TwiML."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from devhost.phone import inbound_sms_params
from shared.inbound import KEYWORDS, keyword
from shared.phone import mask
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MG_SID,
    PUBLIC_BASE_URL,
    VALID_FROM,
    VALID_TO,
    FakeClock,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
)

INCOMING = f"{PUBLIC_BASE_URL}/api/IncomingSms"
VALIDATOR = RequestValidator(AUTH_TOKEN)
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
ALICE = {"x-functions-key": "alice-key"}
OPTED_OUT = {
    "type": "urn:twilio-functions:problem:twilio",
    "title": "Recipient has opted out (replied STOP)",
    "status": 409,
    "detail": "The recipient replied STOP to this sender; Twilio will not deliver until they opt in.",
    "twilioCode": 21610,
    "rule": "opt-out",
}


@pytest.fixture
def fns(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> dict[str, Handler]:
    return functions


def deliver(
    fns: dict[str, Handler], form: Mapping[str, str | list[str]], *, signature: str | None = None
) -> func.HttpResponse:
    # Repeated keys are signed as Twilio signs them: each value (the validator's getlist).
    signed = MultiDict(
        [(k, v) for k, vs in form.items() for v in ([vs] if isinstance(vs, str) else vs)]
    )
    sig = VALIDATOR.compute_signature(INCOMING, signed) if signature is None else signature
    headers = {"X-Twilio-Signature": sig} if sig else {}
    return fns["IncomingSms"](build_request("POST", INCOMING, form=form, headers=headers))


def text(body: str, **options: Any) -> dict[str, str]:
    """What Twilio posts when VALID_TO texts our number."""
    return inbound_sms_params(ACCOUNT_SID, VALID_TO, VALID_FROM, body, **options)


def send(fns: dict[str, Handler], **body: str) -> tuple[int, Any]:
    response = fns["SendSms"](
        build_request("POST", json_body={"to": VALID_TO, "body": "hi", **body}, headers=ALICE)
    )
    return response.status_code, body_of(response)


def conversation(fns: dict[str, Handler], headers: Mapping[str, str] = ALICE) -> list[str]:
    url = f"{PUBLIC_BASE_URL}/api/conversations/{VALID_TO}"
    response = fns["Conversation"](
        build_request("GET", url, headers=headers, route_params={"number": VALID_TO})
    )
    assert response.status_code == 200
    return [f"{m['direction']}:{m['body']}" for m in body_of(response)["messages"]]


def answered(response: func.HttpResponse) -> tuple[int, str, str]:
    return response.status_code, response.mimetype, response.get_body().decode()


# Signature ------------------------------------------------------------------------------


def signature_problem(detail: str) -> dict[str, Any]:
    return {
        "type": "urn:twilio-functions:problem:forbidden",
        "title": "Invalid Twilio signature",
        "status": 403,
        "detail": detail,
        "rule": "twilio-signature",
    }


def test_a_signed_message_is_answered_with_empty_twiml(fns: dict[str, Handler]) -> None:
    assert answered(deliver(fns, text("Hello"))) == (200, "application/xml", EMPTY)


def test_a_missing_signature_is_403_and_nothing_is_stored(
    fns: dict[str, Handler], sandbox: Sandbox
) -> None:
    assert send(fns)[0] == 201
    response = deliver(fns, text("STOP"), signature="")
    assert (response.status_code, body_of(response)) == (
        403,
        signature_problem("Missing X-Twilio-Signature header."),
    )
    assert conversation(fns) == ["outbound:hi"]
    assert send(fns)[0] == 201  # the forged STOP changed nothing


def test_a_signature_over_other_params_is_403(fns: dict[str, Handler]) -> None:
    signature = VALIDATOR.compute_signature(INCOMING, text("Hello"))
    response = deliver(fns, {**text("Hello"), "Body": "STOP"}, signature=signature)
    assert (response.status_code, body_of(response)) == (
        403,
        signature_problem("X-Twilio-Signature does not match this request."),
    )


def test_only_post(fns: dict[str, Handler]) -> None:
    response = fns["IncomingSms"](build_request("GET", INCOMING))
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")


# Stored once, shown to the caller that sent ----------------------------------------------


def test_a_duplicate_delivery_is_stored_once_and_replied_to_once(
    fns: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> None:
    app_env(INBOUND_SMS_AUTO_REPLY="Thanks & see you")
    assert send(fns)[0] == 201
    fake_clock.advance(1)
    form = text("Hello back", sid="SM" + "c" * 32)
    first, again = deliver(fns, form), deliver(fns, form)
    reply = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<Response><Message>Thanks &amp; see you</Message></Response>"
    )
    assert answered(first) == (200, "application/xml", reply)
    # Twilio sends each <Message> it is answered: the repeat must not carry a second one.
    assert answered(again) == (200, "application/xml", EMPTY)
    assert conversation(fns) == ["inbound:Hello back", "outbound:hi"]


def test_media_is_kept_with_its_content_type(fns: dict[str, Handler]) -> None:
    assert send(fns)[0] == 201
    media = [("https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1", "image/png")]
    deliver(fns, text("", sid="MM" + "d" * 32, media=media))
    url = f"{PUBLIC_BASE_URL}/api/conversations/{VALID_TO}?limit=1"
    response = fns["Conversation"](
        build_request("GET", url, headers=ALICE, route_params={"number": VALID_TO})
    )
    [message] = body_of(response)["messages"]
    assert {k: message[k] for k in ("sid", "direction", "from", "to", "body", "media")} == {
        "sid": "MM" + "d" * 32, "direction": "inbound", "from": VALID_TO, "to": VALID_FROM,
        "body": "", "media": [{"url": media[0][0], "contentType": "image/png"}],
    }  # fmt: skip


# Keywords ---------------------------------------------------------------------------------


@pytest.mark.parametrize("word", sorted(KEYWORDS))
@pytest.mark.parametrize("dress", ["{}", " {} ", "{}\n", "\t{}  "])
def test_each_keyword_in_any_case_and_spacing(word: str, dress: str) -> None:
    for variant in (word, word.lower(), word.capitalize()):
        assert keyword(dress.format(variant)) == KEYWORDS[word]


@pytest.mark.parametrize(
    "body", ["stop please", "STOP!", "S TOP", "please stop", "", "stopp", "yes please", "help me"]
)
def test_a_keyword_is_the_whole_body(body: str) -> None:
    assert keyword(body) is None


def test_opt_out_type_from_advanced_opt_out_wins() -> None:
    assert (keyword("arret", "STOP"), keyword("Stop", "start"), keyword("hi", "BOGUS")) == (
        "STOP",
        "START",
        None,
    )


@pytest.mark.parametrize("stop", ["STOP", " stop ", "Unsubscribe", "quit\n", "STOPALL"])
def test_stop_refuses_the_next_send_at_once_and_start_allows_it_again(
    fns: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox, stop: str
) -> None:
    app_env(INBOUND_SMS_AUTO_REPLY="Thanks", LIMIT_PER_CALLER="2/hour")
    assert send(fns)[0] == 201
    assert answered(deliver(fns, text(stop))) == (200, "application/xml", EMPTY)  # no reply
    assert send(fns) == (409, OPTED_OUT)
    assert len(sandbox.requests()) == 1  # Twilio was not asked
    assert answered(deliver(fns, text("start"))) == (200, "application/xml", EMPTY)
    assert send(fns)[0] == 201  # and the 409 spent none of the caller's two sends
    assert len(sandbox.requests()) == 2


def test_a_late_repeat_of_start_never_undoes_a_later_stop(
    fns: dict[str, Handler], sandbox: Sandbox
) -> None:
    start = text("START", sid="SM" + "5" * 32)
    deliver(fns, text("STOP", sid="SM" + "1" * 32))
    deliver(fns, start)
    assert send(fns)[0] == 201
    deliver(fns, text("STOP", sid="SM" + "2" * 32))
    deliver(fns, start)  # Twilio delivers the START again, late
    assert send(fns) == (409, OPTED_OUT)


def test_help_changes_nothing_and_gets_no_auto_reply(
    fns: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(INBOUND_SMS_AUTO_REPLY="Thanks")
    assert answered(deliver(fns, text("Help"))) == (200, "application/xml", EMPTY)
    assert send(fns)[0] == 201


def test_stop_please_is_a_message_not_a_keyword(fns: dict[str, Handler]) -> None:
    assert send(fns)[0] == 201
    deliver(fns, text("stop please"))
    assert send(fns)[0] == 201


def test_stop_to_a_messaging_service_holds_for_the_service_and_the_number(
    fns: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_ALLOWED_SENDERS=MG_SID)
    deliver(fns, text("STOP", messaging_service_sid=MG_SID))
    assert send(fns, **{"from": MG_SID}) == (409, OPTED_OUT)
    assert send(fns) == (409, OPTED_OUT)  # from the number itself
    assert sandbox.requests() == []


def test_stop_to_another_number_leaves_ours_alone(fns: dict[str, Handler]) -> None:
    form = inbound_sms_params(ACCOUNT_SID, VALID_TO, "+14155550199", "STOP")
    deliver(fns, form)
    assert send(fns)[0] == 201


def test_a_21610_from_twilio_is_kept_per_sender(
    fns: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_ALLOWED_SENDERS="+14155550199")
    opted = "+15005550004"  # Twilio's magic number: 21610
    first = send(fns, to=opted)
    assert (first[0], first[1]["twilioCode"]) == (409, 21610)
    assert send(fns, to=opted) == (409, OPTED_OUT)
    assert len(sandbox.requests()) == 1  # the second never reached Twilio
    other_sender = send(fns, to=opted, **{"from": "+14155550199"})
    assert (other_sender[0], other_sender[1]["twilioCode"]) == (409, 21610)
    assert len(sandbox.requests()) == 2  # another sender: Twilio is asked


def test_no_auto_reply_to_an_opted_out_number(fns: dict[str, Handler], app_env: SetEnv) -> None:
    app_env(INBOUND_SMS_AUTO_REPLY="Thanks")
    deliver(fns, text("STOP"))
    assert answered(deliver(fns, text("one more thing"))) == (200, "application/xml", EMPTY)


# The auto-reply is a send the account pays for ---------------------------------------------

REPLY = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks</Message></Response>'


def text_from(sender: str, body: str = "hello", n: int = 1) -> dict[str, str]:
    return inbound_sms_params(ACCOUNT_SID, sender, VALID_FROM, body, sid=f"SM{n:032x}")


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        ("+19005550100", " (destination-number-type): The destination is a premium-rate number"),
        ("+448712345678", " (destination-country): Destination country GB is not allowed"),
        ("+447700900123", ": not a phone number"),  # unassigned
        ("12345", ": not a phone number"),  # a short code
        ("Acme", ": not a phone number"),  # an alphanumeric sender
    ],
)
def test_no_auto_reply_to_a_number_sendsms_would_refuse(
    fns: dict[str, Handler],
    app_env: SetEnv,
    caplog: pytest.LogCaptureFixture,
    sender: str,
    why: str,
) -> None:
    app_env(INBOUND_SMS_AUTO_REPLY="Thanks")
    caplog.set_level(logging.INFO, logger="shared.inbound")
    assert answered(deliver(fns, text_from(sender))) == (200, "application/xml", EMPTY)
    refusals = [r.getMessage() for r in caplog.records if "No auto-reply" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].startswith(f"No auto-reply to {mask(sender)}{why}")


def test_auto_replies_count_against_the_destination_limit(
    fns: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox
) -> None:
    # Another auto-responder answering ours would otherwise ping-pong at our expense.
    app_env(INBOUND_SMS_AUTO_REPLY="Thanks", LIMIT_PER_DESTINATION="2/hour")
    answers = [answered(deliver(fns, text_from(VALID_TO, n=n)))[2] for n in range(1, 4)]
    assert answers == [REPLY, REPLY, EMPTY]
    status, problem = send(fns)  # the same counter a SendSms to that number is charged
    assert (status, problem["rule"], problem["limit"]) == (429, "limit", "destination")
    assert sandbox.requests() == []


# Hostile input: 4xx, never 5xx --------------------------------------------------------------


def webhook_problem(detail: str) -> dict[str, Any]:
    return {
        "type": "urn:twilio-functions:problem:bad-request",
        "title": "Invalid webhook",
        "status": 400,
        "detail": detail,
        "rule": "webhook",
    }


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"MessageSid": "SM123"}, "MessageSid is not a message SID."),
        ({"MessageSid": ""}, "MessageSid is not a message SID."),
        ({"MessagingServiceSid": "MG1"}, "MessagingServiceSid is not a Messaging Service SID."),
        ({"Body": "x" * 1601}, "Body is longer than 1600 characters."),
        ({"Body": ["STOP", "START"]}, "Body must be given once."),
        ({"From": "+1" * 40}, "From is longer than 64 characters."),
        ({"NumMedia": "x"}, "NumMedia must be a number from 0 to 10."),
        ({"NumMedia": "11"}, "NumMedia must be a number from 0 to 10."),
        ({"NumMedia": "99999999999999999999"}, "NumMedia must be a number from 0 to 10."),
        ({"NumMedia": "011"}, "NumMedia must be a number from 0 to 10."),
        ({"NumMedia": "1"}, "MediaUrl0 is required."),
    ],
)
def test_bad_params_are_400_naming_the_field(
    fns: dict[str, Handler], change: dict[str, str | list[str]], detail: str
) -> None:
    response = deliver(fns, {**text("hi"), **change})
    assert (response.status_code, body_of(response)) == (400, webhook_problem(detail))


def test_missing_params_are_400(fns: dict[str, Handler]) -> None:
    form = {k: v for k, v in text("hi").items() if k != "From"}
    response = deliver(fns, form)
    assert (response.status_code, body_of(response)) == (400, webhook_problem("From is required."))


def test_a_json_body_is_refused(fns: dict[str, Handler]) -> None:
    request = build_request("POST", INCOMING, json_body=text("hi"))
    request = build_request(
        "POST", INCOMING, body=request.get_body(),
        headers={"Content-Type": "application/json", "X-Twilio-Signature": "x"},
    )  # fmt: skip
    assert fns["IncomingSms"](request).status_code == 403


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(
            ["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0",
             "MessagingServiceSid", "OptOutType", "x"]
        ),
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(["SM" + "e" * 32, "MG" + "e" * 32, "STOP", "3", "-1", "+14155550100"]),
        ),
        max_size=9,
    )
)  # fmt: skip
def test_no_signed_form_makes_it_answer_5xx(fns: dict[str, Handler], form: dict[str, str]) -> None:
    response = deliver(fns, form)
    assert response.status_code < 500, (form, response.get_body())
