"""The signature matrix, through the TwiML function as the worker would call it.

Signatures are computed with twilio's own RequestValidator.compute_signature over the
URL Twilio would have been given, never hard-coded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import pytest
from twilio.request_validator import RequestValidator

from shared.settings import load_settings
from shared.webhooks import function_url, public_url
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE_URL, Handler, SetEnv, body_of, build_request

VALIDATOR = RequestValidator(AUTH_TOKEN)
TWIML = f"{PUBLIC_BASE_URL}/api/TwiML"
CALL_PARAMS = {"CallSid": "CA" + "1" * 32, "From": "+15005550006", "To": "+14155550100"}
HELLO_XML = '<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="woman">hello world</Say></Response>'


@pytest.fixture
def twiml(functions: dict[str, Handler], app_env: SetEnv) -> Handler:
    return functions["TwiML"]


def post(
    handler: Handler,
    signed_url: str,
    form: Mapping[str, str],
    *,
    url: str | None = None,
    signed_form: Mapping[str, str] | None = None,
    signature: str | None = None,
) -> tuple[int, bytes]:
    sig = signature or VALIDATOR.compute_signature(signed_url, dict(signed_form or form))
    request = build_request(
        "POST", url or signed_url, form=form, headers={"X-Twilio-Signature": sig}
    )
    response = handler(request)
    return response.status_code, response.get_body()


def get(handler: Handler, url: str, signed_url: str | None = None) -> tuple[int, bytes]:
    sig = VALIDATOR.compute_signature(signed_url or url, {})
    response = handler(build_request("GET", url, headers={"X-Twilio-Signature": sig}))
    return response.status_code, response.get_body()


# Accepted -----------------------------------------------------------------------------


def test_valid_form_post(twiml: Handler) -> None:
    url = f"{TWIML}?message=hello+world"
    response = twiml(
        build_request(
            "POST", url, form=CALL_PARAMS,
            headers={"X-Twilio-Signature": VALIDATOR.compute_signature(url, CALL_PARAMS)},
        )
    )  # fmt: skip
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert response.get_body().decode() == HELLO_XML


def test_valid_get_with_query(twiml: Handler) -> None:
    assert get(twiml, f"{TWIML}?message=hello%20world&CallSid=CA1&To=%2B14155550100") == (
        200,
        HELLO_XML.encode(),
    )


def test_signature_over_url_with_port_443_is_accepted(twiml: Handler) -> None:
    signed = "https://functions.example.com:443/api/TwiML?message=hello+world"
    assert post(twiml, signed, CALL_PARAMS, url=f"{TWIML}?message=hello+world")[0] == 200


def test_public_base_url_with_port_443_accepts_signature_without_it(
    twiml: Handler, app_env: SetEnv
) -> None:
    app_env(PUBLIC_BASE_URL="https://functions.example.com:443")
    assert post(twiml, f"{TWIML}?message=hello+world", CALL_PARAMS)[0] == 200


def test_blank_form_values_are_part_of_the_signature(twiml: Handler) -> None:
    form = {**CALL_PARAMS, "Digits": "", "SpeechResult": ""}
    assert post(twiml, f"{TWIML}?message=hello+world", form) == (200, HELLO_XML.encode())


def test_function_key_in_query_is_part_of_the_signed_url(twiml: Handler) -> None:
    assert post(twiml, f"{TWIML}?code=abc%3D%3D&message=hello+world", CALL_PARAMS)[0] == 200


def test_json_body_with_body_sha256(twiml: Handler) -> None:
    body = json.dumps({"event": "x"})
    digest = hashlib.sha256(body.encode()).hexdigest()
    url = f"{TWIML}?message=hello+world&bodySHA256={digest}"
    request = build_request(
        "POST", url, body=body.encode(),
        headers={"Content-Type": "application/json",
                 "X-Twilio-Signature": VALIDATOR.compute_signature(url, {})},
    )  # fmt: skip
    assert twiml(request).status_code == 200


def test_validation_can_be_switched_off_explicitly(
    twiml: Handler, app_env: SetEnv, caplog: pytest.LogCaptureFixture
) -> None:
    app_env(TWILIO_VALIDATE_SIGNATURES="false")
    response = twiml(build_request("GET", f"{TWIML}?message=hello+world"))
    assert (response.status_code, response.get_body()) == (200, HELLO_XML.encode())
    assert caplog.messages == [
        "Twilio signature validation is OFF (TWILIO_VALIDATE_SIGNATURES=false)"
    ]


def test_a_form_with_a_charset_is_still_a_signed_form(twiml: Handler) -> None:
    url = f"{TWIML}?message=hello+world"
    request = build_request(
        "POST", url, form=CALL_PARAMS,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
                 "X-Twilio-Signature": VALIDATOR.compute_signature(url, CALL_PARAMS)},
    )  # fmt: skip
    assert (twiml(request).status_code, twiml(request).get_body()) == (200, HELLO_XML.encode())


# Rejected -----------------------------------------------------------------------------


def assert_forbidden(status_body: tuple[int, bytes], detail: str) -> None:
    status, body = status_body
    assert status == 403
    assert json.loads(body) == {
        "type": "urn:twilio-functions:problem:forbidden",
        "title": "Invalid Twilio signature",
        "status": 403,
        "detail": detail,
        "rule": "twilio-signature",
    }


MISMATCH = "X-Twilio-Signature does not match this request."


def test_tampered_parameter(twiml: Handler) -> None:
    tampered = {**CALL_PARAMS, "To": "+14155550199"}
    result = post(twiml, f"{TWIML}?message=hello+world", tampered, signed_form=CALL_PARAMS)
    assert_forbidden(result, MISMATCH)


def test_tampered_query(twiml: Handler) -> None:
    result = post(twiml, f"{TWIML}?message=hello+world", CALL_PARAMS, url=f"{TWIML}?message=pwned")
    assert_forbidden(result, MISMATCH)


def test_missing_header(twiml: Handler) -> None:
    response = twiml(build_request("POST", TWIML, form=CALL_PARAMS))
    assert_forbidden(
        (response.status_code, response.get_body()), "Missing X-Twilio-Signature header."
    )


def test_http_instead_of_https(twiml: Handler) -> None:
    signed = "http://functions.example.com/api/TwiML?message=hello+world"
    result = post(twiml, signed, CALL_PARAMS, url=f"{TWIML}?message=hello+world")
    assert_forbidden(result, MISMATCH)


def test_reordered_query(twiml: Handler) -> None:
    result = get(
        twiml,
        f"{TWIML}?voice=woman&message=hello",
        signed_url=f"{TWIML}?message=hello&voice=woman",
    )
    assert_forbidden(result, MISMATCH)


def test_re_encoded_query(twiml: Handler) -> None:
    result = get(twiml, f"{TWIML}?message=hello%20world", signed_url=f"{TWIML}?message=hello+world")
    assert_forbidden(result, MISMATCH)


def test_other_token(twiml: Handler) -> None:
    other = RequestValidator("another-token").compute_signature(TWIML, CALL_PARAMS)
    assert_forbidden(post(twiml, TWIML, CALL_PARAMS, signature=other), MISMATCH)


def test_tampered_json_body(twiml: Handler) -> None:
    digest = hashlib.sha256(b'{"event": "x"}').hexdigest()
    url = f"{TWIML}?bodySHA256={digest}"
    request = build_request(
        "POST", url, body=b'{"event": "forged"}',
        headers={"Content-Type": "application/json",
                 "X-Twilio-Signature": VALIDATOR.compute_signature(url, {})},
    )  # fmt: skip
    response = twiml(request)
    assert_forbidden((response.status_code, response.get_body()), MISMATCH)


def test_a_body_that_is_not_utf8_is_403_not_500(twiml: Handler) -> None:
    body = b'{"event": "\xff\xfe"}'
    url = f"{TWIML}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    request = build_request(
        "POST", url, body=body,
        headers={"Content-Type": "application/json",
                 "X-Twilio-Signature": VALIDATOR.compute_signature(url, {})},
    )  # fmt: skip
    response = twiml(request)
    assert_forbidden((response.status_code, response.get_body()), MISMATCH)


def test_json_body_without_body_sha256_is_403_not_500(twiml: Handler) -> None:
    request = build_request(
        "POST", TWIML, body=b'{"event": "x"}',
        headers={"Content-Type": "application/json",
                 "X-Twilio-Signature": VALIDATOR.compute_signature(TWIML, {})},
    )  # fmt: skip
    response = twiml(request)
    assert_forbidden(
        (response.status_code, response.get_body()),
        "A signed body must be form-encoded or carry bodySHA256.",
    )


def test_missing_auth_token_is_503_naming_it(twiml: Handler, app_env: SetEnv) -> None:
    app_env(TWILIO_AUTH_TOKEN=None)
    response = twiml(build_request("GET", TWIML, headers={"X-Twilio-Signature": "x"}))
    assert response.status_code == 503
    assert body_of(response)["setting"] == "TWILIO_AUTH_TOKEN"


# URL building -------------------------------------------------------------------------


def test_public_url_ignores_forwarded_headers_and_keeps_the_raw_query() -> None:
    settings = load_settings({"PUBLIC_BASE_URL": "https://calls.example.com"})
    request = build_request(
        "GET",
        "http://internal-host:8080/api/TwiML?b=2&a=%3D&a=&c",
        headers={"X-Forwarded-Host": "evil.example.com", "X-Forwarded-Proto": "https,https"},
    )
    assert public_url(request, settings) == "https://calls.example.com/api/TwiML?b=2&a=%3D&a=&c"


def test_function_url_is_what_public_url_rebuilds() -> None:
    settings = load_settings({"PUBLIC_BASE_URL": "https://calls.example.com/twilio/"})
    url = function_url(settings, "TwiML", {"message": "Hi & bye", "voice": "woman"})
    assert url == "https://calls.example.com/twilio/api/TwiML?message=Hi+%26+bye&voice=woman"
    # A gateway at /twilio forwards to the app's /api/TwiML with the query untouched.
    forwarded = build_request(
        "POST", "http://app.internal/api/TwiML?message=Hi+%26+bye&voice=woman"
    )
    assert public_url(forwarded, settings) == url


def test_a_mismatch_is_logged_without_the_query(
    twiml: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    url = "http://internal.example.net/api/TwiML?message=secret+code+1234&To=%2B14155550100"
    response = twiml(build_request("GET", url, headers={"X-Twilio-Signature": "bogus"}))
    assert response.status_code == 403
    assert caplog.messages == [
        "Twilio signature mismatch: validated against https://functions.example.com/api/TwiML, "
        "request came to http://internal.example.net/api/TwiML"
    ]
