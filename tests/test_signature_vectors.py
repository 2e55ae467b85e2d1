"""Known-answer vectors: signatures written out as literals, never computed by the
RequestValidator under test, so a misunderstanding shared by the code and the test (which
URL is signed, which parameters, how a JSON body is bound) cannot pass.

Twilio's vectors come from its documentation and twilio-python's own tests; ours were
computed once with a plain HMAC-SHA1 (base64 of HMAC(token, url + sorted key+value)), not
with twilio, and each flipped byte of the request must turn them into a 403.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from shared.errors import AppError
from shared.settings import load_settings
from shared.webhooks import verify_twilio_request
from tests.conftest import PUBLIC_BASE_URL, Handler, SetEnv, build_request

# twilio.com/docs/usage/security, "Validating signatures from Twilio": auth token 12345.
DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOCS_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOCS_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
# The same page's earlier edition (the caller +14158675310), quoted by many libraries.
DOCS_OLD_PARAMS = {**DOCS_PARAMS, "Caller": "+14158675310", "From": "+14158675310"}
DOCS_OLD_SIGNATURE = "GvWf1cFY/Q7PnoempGyD5oXAezc="
# Signed over the URL with :443 (the validator tries it with and without the port).
DOCS_OLD_SIGNATURE_443 = "5s2PFy0qmPcZucb4eH4b08ZJtL0="
# twilio-python tests/unit/test_request_validator.py: a JSON body bound by bodySHA256.
BODY = '{"property": "value", "boolean": true}'
BODY_SHA256 = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
BODY_SIGNATURE = "a9nBmqA0ju/hNViExpshrM61xv4="

MISMATCH = "X-Twilio-Signature does not match this request."


def verify(
    url: str,
    signature: str,
    *,
    form: Mapping[str, str] | None = None,
    body: str | None = None,
    received_at: str | None = None,
) -> None:
    """verify_twilio_request as the handlers call it, on a request that reached the app
    at `received_at` (an internal URL) while Twilio signed `url`."""
    settings = load_settings(
        {"TWILIO_AUTH_TOKEN": "12345", "PUBLIC_BASE_URL": "https://mycompany.com"}
    )
    headers = {"X-Twilio-Signature": signature}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = build_request(
        "POST", received_at or url, form=form, headers=headers,
        body=body.encode() if body is not None else None,
    )  # fmt: skip
    verify_twilio_request(request, settings)


def refusal(
    url: str, signature: str, *, form: Mapping[str, str] | None = None, body: str | None = None
) -> tuple[int, str | None, str]:
    with pytest.raises(AppError) as raised:
        verify(url, signature, form=form, body=body)
    return raised.value.status_code, raised.value.extra.get("rule"), raised.value.detail


# Twilio's vectors, through verify_twilio_request -------------------------------------


def test_twilios_documented_example_is_accepted() -> None:
    verify(DOCS_URL, DOCS_SIGNATURE, form=DOCS_PARAMS)
    verify(DOCS_URL, DOCS_OLD_SIGNATURE, form=DOCS_OLD_PARAMS)


def test_the_url_is_rebuilt_on_the_public_base_url_before_it_is_checked() -> None:
    # The worker saw http and an internal host; Twilio signed the public https URL.
    internal = "http://10.0.0.4:8080/myapp.php?foo=1&bar=2"
    verify(DOCS_URL, DOCS_SIGNATURE, form=DOCS_PARAMS, received_at=internal)


def test_a_signature_over_the_url_with_port_443_is_accepted() -> None:
    verify(DOCS_URL, DOCS_OLD_SIGNATURE_443, form=DOCS_OLD_PARAMS)


@pytest.mark.parametrize(
    ("url", "form"),
    [
        (DOCS_URL, {**DOCS_PARAMS, "Digits": "1235"}),  # a parameter
        (DOCS_URL, {**DOCS_PARAMS, "Extra": ""}),  # one more, even blank
        ("https://mycompany.com/myapp.php?foo=1&bar=3", DOCS_PARAMS),  # the query
        ("https://mycompany.com/myapp.php?bar=2&foo=1", DOCS_PARAMS),  # its order
        ("https://mycompany.com/myapp.ph?foo=1&bar=2", DOCS_PARAMS),  # the path
    ],
)
def test_any_change_to_the_documented_example_is_refused(url: str, form: dict[str, str]) -> None:
    assert refusal(url, DOCS_SIGNATURE, form=form) == (403, "twilio-signature", MISMATCH)


def test_twilio_pythons_body_vector_is_accepted() -> None:
    verify(f"{DOCS_URL}&bodySHA256={BODY_SHA256}", BODY_SIGNATURE, body=BODY)


def test_a_body_that_does_not_hash_to_body_sha256_is_refused() -> None:
    url = f"{DOCS_URL}&bodySHA256={BODY_SHA256}"
    forged = BODY.replace("true", "false")
    assert refusal(url, BODY_SIGNATURE, body=forged) == (403, "twilio-signature", MISMATCH)


def test_a_body_the_validator_cannot_bind_is_refused_not_accepted() -> None:
    # `xbodySHA256=` contains "bodySHA256=", so the raw body goes to the validator, which
    # finds no bodySHA256 parameter and raises on the string: a refusal, never a pass.
    url = f"{DOCS_URL}&xbodySHA256={BODY_SHA256}"
    assert refusal(url, BODY_SIGNATURE, body=BODY) == (403, "twilio-signature", MISMATCH)


# Our own vectors, through the handlers Twilio calls -----------------------------------

TWIML = f"{PUBLIC_BASE_URL}/api/TwiML"
CALL_PARAMS = {"CallSid": "CA" + "1" * 32, "From": "+15005550006", "To": "+14155550100"}
HELLO_XML = b'<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="woman">hello world</Say></Response>'
FORM_SIGNATURE = "fCNpvO2oew8v3WhVGcTxS//+j58="  # POST TWIML?message=hello+world, CALL_PARAMS
KEY_SIGNATURE = "KoU5JNM/uPeYAwgpEab6mfGDByI="  # GET TWIML?code=abc%3D%3D&message=hello+world
JSON_BODY = b'{"event": "x"}'
JSON_SHA256 = "af422e6c80c31f5749e02344f8eb01b0373a71f10a60abb06118d36965113cb1"
JSON_SIGNATURE = "mFlcteEliW5rP6eZ7sm4cbGwc+I="  # POST TWIML?message=hello+world&bodySHA256=…
STATUS_FORM = {
    "MessageSid": "SM" + "a" * 32,
    "MessageStatus": "delivered",
    "SmsSid": "SM" + "a" * 32,
    "SmsStatus": "delivered",
    "AccountSid": "AC" + "0" * 32,
}
STATUS_SIGNATURE = "0VEIQC1clBIk7tKZxW4Tddi4Zuo="  # POST /api/StatusCallback, STATUS_FORM


@pytest.fixture
def handlers(functions: dict[str, Handler], app_env: SetEnv) -> dict[str, Handler]:
    return functions


def answer(
    handler: Handler,
    method: str,
    url: str,
    signature: str,
    *,
    form: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, bytes]:
    headers = {"X-Twilio-Signature": signature}
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = handler(build_request(method, url, form=form, body=body, headers=headers))
    return response.status_code, response.get_body()


def forbidden(detail: str = MISMATCH) -> tuple[int, bytes]:
    problem = {
        "type": "urn:twilio-functions:problem:forbidden",
        "title": "Invalid Twilio signature",
        "status": 403,
        "detail": detail,
        "rule": "twilio-signature",
    }
    return 403, json.dumps(problem).encode()


def test_a_form_post_to_our_twiml_url(handlers: dict[str, Handler]) -> None:
    twiml, url = handlers["TwiML"], f"{TWIML}?message=hello+world"
    assert answer(twiml, "POST", url, FORM_SIGNATURE, form=CALL_PARAMS) == (200, HELLO_XML)
    tampered = {**CALL_PARAMS, "To": "+14155550101"}
    assert answer(twiml, "POST", url, FORM_SIGNATURE, form=tampered) == forbidden()


def test_a_query_with_the_function_key_is_signed_as_sent(handlers: dict[str, Handler]) -> None:
    twiml = handlers["TwiML"]
    url = f"{TWIML}?code=abc%3D%3D&message=hello+world"
    assert answer(twiml, "GET", url, KEY_SIGNATURE) == (200, HELLO_XML)
    decoded = f"{TWIML}?code=abc==&message=hello+world"
    assert answer(twiml, "GET", decoded, KEY_SIGNATURE) == forbidden()


def test_a_json_body_bound_by_body_sha256(handlers: dict[str, Handler]) -> None:
    twiml = handlers["TwiML"]
    url = f"{TWIML}?message=hello+world&bodySHA256={JSON_SHA256}"
    assert answer(twiml, "POST", url, JSON_SIGNATURE, body=JSON_BODY) == (200, HELLO_XML)
    forged = b'{"event": "y"}'
    assert answer(twiml, "POST", url, JSON_SIGNATURE, body=forged) == forbidden()


def test_a_json_body_under_a_lookalike_parameter_is_refused(handlers: dict[str, Handler]) -> None:
    url = f"{TWIML}?message=hello+world&xbodySHA256={JSON_SHA256}"
    assert answer(handlers["TwiML"], "POST", url, JSON_SIGNATURE, body=JSON_BODY) == forbidden()


def test_a_status_callback(handlers: dict[str, Handler]) -> None:
    callback, url = handlers["StatusCallback"], f"{PUBLIC_BASE_URL}/api/StatusCallback"
    assert answer(callback, "POST", url, STATUS_SIGNATURE, form=STATUS_FORM) == (204, b"")
    tampered = {**STATUS_FORM, "MessageStatus": "failed", "SmsStatus": "failed"}
    assert answer(callback, "POST", url, STATUS_SIGNATURE, form=tampered) == forbidden()
