"""MakeCall through the real twilio library against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import (
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    VALID_FROM,
    VALID_TO,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
    post_json,
)

URL = "https://functions.example.com/api/MakeCall"


@pytest.fixture
def make_call(functions: dict[str, Handler], app_env: SetEnv) -> Handler:
    return functions["MakeCall"]


def call(handler: Handler, payload: Any) -> tuple[int, Any]:
    return post_json(handler, URL, payload)


def test_places_a_call_whose_twiml_is_our_twiml_function(
    make_call: Handler, sandbox: Sandbox
) -> None:
    payload = {"to": VALID_TO, "message": "Hi & bye", "voice": "Polly.Amy", "language": "en-GB"}
    status, body = call(make_call, payload)
    [placed] = sandbox.calls()
    assert (status, body) == (
        201,
        {"sid": placed["sid"], "status": "queued", "to": VALID_TO, "from": VALID_FROM},
    )
    # Twilio is told to fetch our own TwiML function at its public (signed) URL.
    assert sandbox.settled_call(placed["sid"])["twiml_request"]["url"] == (
        "https://functions.example.com/api/TwiML?message=Hi+%26+bye&voice=Polly.Amy&language=en-GB"
    )


def test_without_message_the_twiml_url_carries_no_parameters(
    make_call: Handler, sandbox: Sandbox
) -> None:
    assert call(make_call, {"to": VALID_TO})[0] == 201
    call_record = sandbox.settled_call(sandbox.calls()[0]["sid"])
    assert call_record["twiml_request"]["url"] == "https://functions.example.com/api/TwiML"


def test_caller_url_on_an_allowed_https_host(
    make_call: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWIML_ALLOWED_HOSTS="twimlets.com")
    url = "https://twimlets.com/message?Message%5B0%5D=Hello"
    assert call(make_call, {"to": VALID_TO, "url": url})[0] == 201
    assert sandbox.settled_call(sandbox.calls()[0]["sid"])["twiml_request"]["url"] == url


URL_REFUSED = (
    "{field} must be an https URL on a host listed in TWIML_ALLOWED_HOSTS, "
    "without user info, backslashes, spaces or control characters."
)
# Each is read as twimlets.com by one parser and as another host (or not at all) by another.
AMBIGUOUS_URLS = [
    "https://evil.example\\@twimlets.com/t.xml",  # WHATWG: host evil.example
    "https://evil.example\\.twimlets.com/t.xml",
    "https://user@twimlets.com/t.xml",
    "https://evil.example:443@twimlets.com/t.xml",
    "https://twimlets.com\t.evil.example/t.xml",  # WHATWG drops the tab
    "https://twimlets.com\n/t.xml",
    "https://twimlets.com /t.xml",
    "https://twimlets.com%2eevil.example/t.xml",
    "https://twimlets.com./t.xml",
    "https://0x7f.1/t.xml",
]


@pytest.mark.parametrize(
    "url",
    [
        "http://twimlets.com/message",
        "https://evil.example.com/twiml",
        "https://twimlets.com.evil.io/x",
        "https://evil.io/twimlets.com",
        *AMBIGUOUS_URLS,
    ],
)
def test_caller_url_must_be_https_on_an_allowed_host(
    make_call: Handler, app_env: SetEnv, sandbox: Sandbox, url: str
) -> None:
    app_env(TWIML_ALLOWED_HOSTS="twimlets.com")
    assert call(make_call, {"to": VALID_TO, "url": url}) == (
        403,
        {
            "type": "urn:twilio-functions:problem:forbidden",
            "title": "URL not allowed",
            "status": 403,
            "detail": URL_REFUSED.format(field="url"),
            "rule": "twiml-url",
            "field": "url",
        },
    )
    assert sandbox.requests() == []


def test_an_allowed_host_is_compared_without_regard_to_case(
    make_call: Handler, app_env: SetEnv
) -> None:
    app_env(TWIML_ALLOWED_HOSTS="twimlets.com")
    assert call(make_call, {"to": VALID_TO, "url": "https://TwiMLets.com/message"})[0] == 201


def test_a_message_that_is_audio_must_come_from_an_allowed_host(
    make_call: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWIML_ALLOWED_HOSTS="twimlets.com")
    assert call(make_call, {"to": VALID_TO, "message": "https://evil.example/a.mp3"}) == (
        403,
        {
            "type": "urn:twilio-functions:problem:forbidden",
            "title": "URL not allowed",
            "status": 403,
            "detail": URL_REFUSED.format(field="message"),
            "rule": "play-url",
            "field": "message",
        },
    )
    assert sandbox.requests() == []


@pytest.mark.parametrize("message", AMBIGUOUS_URLS[:4])
def test_a_message_that_is_an_ambiguous_url_is_refused(
    make_call: Handler, app_env: SetEnv, sandbox: Sandbox, message: str
) -> None:
    app_env(TWIML_ALLOWED_HOSTS="twimlets.com")
    status, body = call(make_call, {"to": VALID_TO, "message": message})
    assert (status, body["errors"]) == (
        400,
        [{"field": "message", "message": "is not a valid URL"}],
    )
    assert sandbox.requests() == []


def test_audio_from_an_allowed_host_is_played(
    make_call: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWIML_ALLOWED_HOSTS="twimlets.com")
    status, body = call(make_call, {"to": VALID_TO, "message": "https://twimlets.com/a.mp3"})
    assert status == 201
    twiml_url = sandbox.settled_call(body["sid"])["twiml_request"]["url"]
    assert twiml_url == f"{PUBLIC_BASE_URL}/api/TwiML?message=https%3A%2F%2Ftwimlets.com%2Fa.mp3"


def test_twiml_refuses_to_play_audio_from_other_hosts(
    functions: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(TWIML_ALLOWED_HOSTS="twimlets.com")
    url = f"{PUBLIC_BASE_URL}/api/TwiML?message=https%3A%2F%2Fevil.example%2Fa.mp3"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, {})
    response = functions["TwiML"](
        build_request("GET", url, headers={"X-Twilio-Signature": signature})
    )
    assert (response.status_code, body_of(response)["rule"]) == (403, "play-url")


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({}, [{"field": "to", "message": "is required"}]),
        ({"to": VALID_TO, "url": "https://x.example/t", "message": "hi"}, [{"field": "url", "message": "cannot be combined with message, voice or language"}]),
        ({"to": VALID_TO, "message": "x" * 4097}, [{"field": "message", "message": "must be at most 4096 characters"}]),
        ({"to": VALID_TO, "message": "   "}, [{"field": "message", "message": "must not be empty"}]),
        ({"to": VALID_TO, "voice": "robot"}, [{"field": "voice", "message": "must be man, woman, Polly.<Name> or Google.<name>"}]),
        # Twilio's docs no longer list alice.
        ({"to": VALID_TO, "voice": "alice"}, [{"field": "voice", "message": "must be man, woman, Polly.<Name> or Google.<name>"}]),
        ({"to": VALID_TO, "language": "en_US"}, [{"field": "language", "message": "must be a language tag such as en-US"}]),
        ({"to": VALID_TO, "from": "12"}, [{"field": "from", "message": "must be in E.164 format, e.g. +14155550100"}]),
        ({"to": VALID_TO, "twiml": "<Response/>"}, [{"field": "twiml", "message": "is not a known field"}]),
    ],
)  # fmt: skip
def test_field_errors(
    make_call: Handler, sandbox: Sandbox, payload: dict[str, Any], errors: list[dict[str, str]]
) -> None:
    status, body = call(make_call, payload)
    assert (status, body["errors"]) == (400, errors)
    assert sandbox.requests() == []


def test_destination_country_not_allowed(make_call: Handler) -> None:
    status, body = call(make_call, {"to": "+442079460000"})
    assert (status, body["rule"], body["country"]) == (403, "destination-country", "GB")


def test_messaging_service_cannot_place_calls(make_call: Handler, app_env: SetEnv) -> None:
    app_env(
        TWILIO_FROM_NUMBER=None,
        TWILIO_MESSAGING_SERVICE_SID="MG" + "a" * 32,
        ALLOWED_COUNTRIES="US",
    )
    assert call(make_call, {"to": VALID_TO})[1]["setting"] == "TWILIO_FROM_NUMBER"


def test_missing_public_base_url_is_503(make_call: Handler, app_env: SetEnv) -> None:
    app_env(PUBLIC_BASE_URL=None)
    status, body = call(make_call, {"to": VALID_TO})
    assert (status, body["setting"]) == (503, "PUBLIC_BASE_URL")


@pytest.mark.parametrize(
    ("to", "status", "code"),
    [
        ("+15005550001", 422, 21217),
        ("+15005550002", 422, 21214),
        ("+15005550003", 403, 21215),
        ("+15005550004", 403, 21216),
    ],
)
def test_twilio_rejections(make_call: Handler, to: str, status: int, code: int) -> None:
    result_status, body = call(make_call, {"to": to})
    assert (result_status, body["twilioCode"], body["type"]) == (
        status,
        code,
        "urn:twilio-functions:problem:twilio",
    )


def test_rate_limited_call_is_retried(make_call: Handler, sandbox: Sandbox) -> None:
    assert call(make_call, {"to": "+15005550428"})[0] == 201
    assert len(sandbox.requests()) == 2


def test_wrong_method(make_call: Handler) -> None:
    response = make_call(build_request("PUT", URL))
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
