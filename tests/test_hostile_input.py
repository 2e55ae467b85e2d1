"""No client input is a 5xx: bodies too large, too deep, not Unicode, or built to confuse.

Each case here was once a 500 (or cost seconds of CPU): the last group fuzzes the mobile
routes with Hypothesis and asserts the one property that matters, status < 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from tests.conftest import (
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    VALID_TO,
    FakeClock,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
)

SMS_URL = f"{PUBLIC_BASE_URL}/api/SendSms"
CALL_URL = f"{PUBLIC_BASE_URL}/api/MakeCall"
TWIML_URL = f"{PUBLIC_BASE_URL}/api/TwiML"
CALLBACK_URL = f"{PUBLIC_BASE_URL}/api/StatusCallback"


@pytest.fixture
def fns(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> dict[str, Handler]:
    return functions


def raw_post(
    handler: Handler, url: str, body: bytes, content_type: str = "application/json"
) -> Any:
    return handler(build_request("POST", url, body=body, headers={"Content-Type": content_type}))


# Too large: refused before anything is parsed -----------------------------------------------


@pytest.mark.parametrize(
    ("function", "url", "limit"),
    [
        ("TwiML", TWIML_URL, 64 * 1024),
        ("StatusCallback", CALLBACK_URL, 64 * 1024),
        ("IncomingSms", f"{PUBLIC_BASE_URL}/api/IncomingSms", 64 * 1024),
        ("SendSms", SMS_URL, 256 * 1024),
        ("MakeCall", CALL_URL, 256 * 1024),
    ],
)
def test_a_body_over_the_routes_limit_is_413_before_parsing(
    fns: dict[str, Handler], sandbox: Sandbox, function: str, url: str, limit: int
) -> None:
    body = b"a=" + b"x" * limit  # unsigned: parsing it would be the attack
    response = raw_post(fns[function], url, body, "application/x-www-form-urlencoded")
    assert (response.status_code, body_of(response)) == (
        413,
        {
            "type": "about:blank",
            "title": "Payload Too Large",
            "status": 413,
            "detail": f"The body is {len(body)} bytes; this route accepts at most {limit}.",
            "rule": "body-size",
            "maxBytes": limit,
        },
    )
    assert sandbox.requests() == []


def test_a_lying_content_length_is_not_believed(fns: dict[str, Handler]) -> None:
    body = b"x" * (64 * 1024 + 1)
    request = build_request(
        "POST", TWIML_URL, body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "10"},
    )  # fmt: skip
    response = fns["TwiML"](request)
    assert (response.status_code, body_of(response)["rule"], body_of(response)["maxBytes"]) == (
        413, "body-size", 64 * 1024
    )  # fmt: skip


def test_the_largest_valid_sms_fits(fns: dict[str, Handler], sandbox: Sandbox) -> None:
    payload = {
        "to": VALID_TO,
        "body": "\U0001f600" * 1600,
        "mediaUrl": [f"https://media.example.com/{i}/" + "a" * 2000 for i in range(10)],
    }
    body = json.dumps(payload).encode()  # every emoji escaped: 12 bytes a character
    assert raw_post(fns["SendSms"], SMS_URL, body).status_code == 201


# Not JSON a server should have to bear ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "title"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "Malformed JSON"),  # past any recursion limit
        (b'{"to": ' + b"[" * 5000 + b"]" * 5000 + b"}", "Request validation failed"),
        (b'{"to": "+14155550100", "body": "\\ud800"}', "Malformed JSON"),  # lone surrogate
        (b'{"to": "+14155550100", "body": "\\udc00\\ud800"}', "Malformed JSON"),
        (b'{"to": "+14155550100", "body": "\xff"}', "Malformed JSON"),  # not UTF-8
    ],
)
def test_json_a_server_should_not_bear_is_400(
    fns: dict[str, Handler], sandbox: Sandbox, body: bytes, title: str
) -> None:
    response = raw_post(fns["SendSms"], SMS_URL, body)
    assert (response.status_code, body_of(response)["title"]) == (400, title)
    assert sandbox.requests() == []


def signed_get(handler: Handler, url: str) -> Any:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, {})
    return handler(build_request("GET", url, headers={"X-Twilio-Signature": signature}))


@pytest.mark.parametrize(
    "loop", ["²", "٣", "\uff11", "-1", "0", "11", "1e1", " 2"]
)  # \uff11: fullwidth 1
def test_twiml_loop_must_be_ascii_digits_in_range(fns: dict[str, Handler], loop: str) -> None:
    from urllib.parse import quote

    response = signed_get(fns["TwiML"], f"{TWIML_URL}?message=hi&loop={quote(loop)}")
    assert (response.status_code, body_of(response)["errors"]) == (
        400,
        [{"field": "loop", "message": "must be a whole number from 1 to 10"}],
    )


# Calls that could only fail ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("http://", "is not a valid URL"),
        ("https://", "is not a valid URL"),
        ("hello\x00there", "must not contain control characters"),
        ("bell\x07", "must not contain control characters"),
        ("\ufffe", "must not contain control characters"),
    ],
)
def test_a_call_whose_twiml_would_fail_is_refused(
    fns: dict[str, Handler], sandbox: Sandbox, message: str, error: str
) -> None:
    response = fns["MakeCall"](
        build_request("POST", CALL_URL, json_body={"to": VALID_TO, "message": message})
    )
    assert (response.status_code, body_of(response)["errors"]) == (
        400,
        [{"field": "message", "message": error}],
    )
    assert sandbox.requests() == []


def test_a_message_too_long_for_its_twiml_url_is_refused(
    fns: dict[str, Handler], sandbox: Sandbox
) -> None:
    message = "日本語のメッセージ" * 100  # 900 characters, 8,100 once percent-encoded
    response = fns["MakeCall"](
        build_request("POST", CALL_URL, json_body={"to": VALID_TO, "message": message})
    )
    errors = body_of(response)["errors"]
    assert (response.status_code, [e["field"] for e in errors]) == (400, ["message"])
    assert errors[0]["message"].startswith("is too long once encoded in the TwiML URL (")
    assert errors[0]["message"].endswith(" of 4000 characters); shorten it")
    assert sandbox.requests() == []


def test_the_longest_ascii_message_still_fits(fns: dict[str, Handler], sandbox: Sandbox) -> None:
    response = fns["MakeCall"](
        build_request("POST", CALL_URL, json_body={"to": VALID_TO, "message": "a" * 3900})
    )
    assert response.status_code == 201


# Anything at all: never a 5xx ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
field_values = json_values | st.sampled_from(
    [
        "+14155550100",
        "+19005550100",
        "https://x.example/a",
        "http://",
        "",
        " ",
        "\x00",
        "MG" + "0" * 32,
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from([("SendSms", SMS_URL), ("MakeCall", CALL_URL)]),
    body=st.dictionaries(
        st.sampled_from(
            ["to", "body", "from", "mediaUrl", "message", "voice", "language", "url", "x"]
        ),
        field_values,
        max_size=5,
    ),
)
def test_no_body_makes_a_mobile_route_answer_5xx(
    fns: dict[str, Handler], route: tuple[str, str], body: dict[str, Any]
) -> None:
    name, url = route
    response = fns[name](build_request("POST", url, json_body=body))
    assert response.status_code < 500, (body, response.get_body())
