"""SendSms through the real twilio library against the sandbox (Twilio's magic numbers)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import (
    ACCOUNT_SID,
    MG_SID,
    OTHER_FROM,
    VALID_FROM,
    VALID_TO,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
    post_json,
)

URL = "https://functions.example.com/api/SendSms"


@pytest.fixture
def send_sms(functions: dict[str, Handler], app_env: SetEnv) -> Handler:
    return functions["SendSms"]


def call(handler: Handler, payload: Any) -> tuple[int, Any]:
    return post_json(handler, URL, payload)


def test_sends_and_answers_201(send_sms: Handler, sandbox: Sandbox) -> None:
    response = send_sms(build_request("POST", URL, json_body={"to": VALID_TO, "body": "Hi & bye"}))
    assert response.status_code == 201
    assert response.mimetype == "application/json"
    body = body_of(response)
    [message] = sandbox.messages()
    assert body == {
        "sid": message["sid"],
        "status": "queued",
        "to": VALID_TO,
        "from": VALID_FROM,
        "messagingServiceSid": None,
        "numSegments": 1,
        "dateCreated": body["dateCreated"],
    }
    assert body["sid"].startswith("SM")
    assert (message["to"], message["from"], message["body"]) == (VALID_TO, VALID_FROM, "Hi & bye")


def test_form_body_with_repeated_media_urls(send_sms: Handler, sandbox: Sandbox) -> None:
    form: dict[str, str | list[str]] = {
        "to": "+1 415 555 0100",
        "mediaUrl": ["https://x.example/a.png", "https://x.example/b.png"],
    }
    response = send_sms(build_request("POST", URL, form=form))
    assert response.status_code == 201
    [message] = sandbox.messages()
    assert message["media_url"] == ["https://x.example/a.png", "https://x.example/b.png"]
    assert (message["to"], message["body"]) == (VALID_TO, "")


def test_national_number_with_default_region(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(DEFAULT_REGION="US")
    assert call(send_sms, {"to": "(415) 555-0100", "body": "x"})[0] == 201
    assert sandbox.messages()[0]["to"] == VALID_TO


def test_messaging_service_is_the_default_sender_without_a_number(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_FROM_NUMBER=None, TWILIO_MESSAGING_SERVICE_SID=MG_SID, ALLOWED_COUNTRIES="US")
    status, body = call(send_sms, {"to": VALID_TO, "body": "x"})
    assert (status, body["messagingServiceSid"], body["status"]) == (201, MG_SID, "accepted")
    assert sandbox.messages()[0]["messaging_service_sid"] == MG_SID


def test_caller_chosen_sender_from_the_allowed_list(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_ALLOWED_SENDERS=OTHER_FROM)
    status, body = call(send_sms, {"to": VALID_TO, "body": "x", "from": "+1 415 555 0199"})
    assert (status, body["from"]) == (201, OTHER_FROM)


def test_an_allowed_sender_twilio_says_we_do_not_own_is_a_terse_500(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_ALLOWED_SENDERS="+14155550123")
    status, body = call(send_sms, {"to": VALID_TO, "body": "x", "from": "+14155550123"})
    assert (status, body["title"], body["twilioCode"]) == (500, "Server misconfigured", 21606)
    assert sandbox.messages() == []


def test_a_malformed_allowed_sender_is_500_naming_the_setting(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_ALLOWED_SENDERS="MG123")
    assert call(send_sms, {"to": VALID_TO, "body": "x"}) == (
        500,
        {
            "type": "urn:twilio-functions:problem:misconfigured",
            "title": "Server misconfigured",
            "status": 500,
            "detail": "The server is misconfigured: setting TWILIO_ALLOWED_SENDERS must be "
            "E.164 numbers or Messaging Service SIDs (MG…).",
            "setting": "TWILIO_ALLOWED_SENDERS",
        },
    )
    assert sandbox.requests() == []


def test_an_allowed_sender_that_is_no_phone_number_is_500_naming_the_setting(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    # E.164 in shape (load_settings accepts it), but phonenumbers knows no such number.
    app_env(TWILIO_ALLOWED_SENDERS="+10000000000")
    status, body = call(send_sms, {"to": VALID_TO, "body": "x", "from": OTHER_FROM})
    assert (status, body["setting"]) == (500, "TWILIO_ALLOWED_SENDERS")
    assert sandbox.requests() == []


def test_sender_not_allowed(send_sms: Handler, sandbox: Sandbox) -> None:
    assert call(send_sms, {"to": VALID_TO, "body": "x", "from": "+14155550199"}) == (
        403,
        {
            "type": "urn:twilio-functions:problem:forbidden",
            "title": "Sender not allowed",
            "status": 403,
            "detail": "from is not one of the allowed senders.",
            "rule": "sender",
        },
    )
    assert sandbox.requests() == []


def test_destination_country_not_allowed(send_sms: Handler, sandbox: Sandbox) -> None:
    assert call(send_sms, {"to": "+442079460000", "body": "x"}) == (
        403,
        {
            "type": "urn:twilio-functions:problem:forbidden",
            "title": "Destination not allowed",
            "status": 403,
            "detail": "Destination country GB is not allowed (allowed: US).",
            "rule": "destination-country",
            "country": "GB",
        },
    )
    assert sandbox.requests() == []


@pytest.mark.parametrize(
    ("to", "countries", "number_type"),
    [
        ("+19005550100", "US", "premium-rate"),  # +1 900: passed the country-only policy
        ("+18005550100", "US", "toll-free"),
        ("+448712345678", "GB", "premium-rate"),  # once a country is allowed, its 087x too
        ("+447012345678", "GB", "personal-number"),  # UK 070: a known fraud range
        ("+15005550006", "US", "personal-number"),  # Twilio's test range, without the exception
    ],
)
def test_destinations_that_cost_extra_are_refused_by_type(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox, to: str, countries: str, number_type: str
) -> None:
    app_env(ALLOWED_COUNTRIES=countries, NUMBER_TYPE_EXCEPTIONS=None)
    assert call(send_sms, {"to": to, "body": "x"}) == (
        403,
        {
            "type": "urn:twilio-functions:problem:forbidden",
            "title": "Destination not allowed",
            "status": 403,
            "detail": f"The destination is a {number_type} number; SMS may go to mobile, fixed-line, fixed-line-or-mobile numbers only.",
            "rule": "destination-number-type",
            "numberType": number_type,
        },
    )
    assert sandbox.requests() == []


def test_number_types_are_configurable_per_channel(
    send_sms: Handler, functions: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(SMS_NUMBER_TYPES="mobile,fixed-line-or-mobile,toll-free")
    assert call(send_sms, {"to": "+18005550100", "body": "x"})[0] == 201
    calling = post_json(
        functions["MakeCall"], "https://functions.example.com/api/MakeCall", {"to": "+18005550100"}
    )
    assert (calling[0], calling[1]["rule"], calling[1]["numberType"]) == (
        403,
        "destination-number-type",
        "toll-free",
    )
    app_env(SMS_NUMBER_TYPES="mobile")  # US numbers are mostly "fixed-line-or-mobile"
    assert call(send_sms, {"to": VALID_TO, "body": "x"})[1]["numberType"] == "fixed-line-or-mobile"


def test_the_exception_prefix_skips_only_the_type_check(send_sms: Handler, app_env: SetEnv) -> None:
    app_env(NUMBER_TYPE_EXCEPTIONS="+1900555")
    assert call(send_sms, {"to": "+19005550100", "body": "x"})[0] == 201
    assert (
        call(send_sms, {"to": "+19005560100", "body": "x"})[1]["rule"] == "destination-number-type"
    )
    app_env(NUMBER_TYPE_EXCEPTIONS="+44", ALLOWED_COUNTRIES="US")
    assert call(send_sms, {"to": "+448712345678", "body": "x"})[1]["rule"] == "destination-country"


@pytest.mark.parametrize(
    "media",
    [
        "https://evil.example\\@media.example.com/a.png",
        "https://user:pw@media.example.com/a.png",
        "https://media.example.com\t/a.png",
        "https://media.example.com /a.png",
        "https://127.0.0.1/a.png",
        "https://media.example.com%2F@evil.example/a.png",
        "ftp://media.example.com/a.png",
    ],
)
def test_media_urls_must_read_the_same_to_every_parser(
    send_sms: Handler, sandbox: Sandbox, media: str
) -> None:
    status, body = call(send_sms, {"to": VALID_TO, "mediaUrl": media})
    assert (status, body["errors"]) == (
        400,
        [
            {
                "field": "mediaUrl",
                "message": "must be http(s) URLs without user info, backslashes or spaces",
            }
        ],
    )
    assert sandbox.requests() == []


def test_star_allows_every_country(send_sms: Handler, app_env: SetEnv) -> None:
    app_env(ALLOWED_COUNTRIES="*")
    assert call(send_sms, {"to": "+442079460000", "body": "x"})[0] == 201


def test_explicit_country_list_replaces_the_default(send_sms: Handler, app_env: SetEnv) -> None:
    app_env(ALLOWED_COUNTRIES="GB")
    assert call(send_sms, {"to": "+442079460000", "body": "x"})[0] == 201
    status, body = call(send_sms, {"to": VALID_TO, "body": "x"})
    assert (status, body["rule"], body["detail"]) == (
        403, "destination-country", "Destination country US is not allowed (allowed: GB)."
    )  # fmt: skip


def test_every_bad_field_is_listed(send_sms: Handler, sandbox: Sandbox) -> None:
    payload = {"to": "4155550100", "body": "x" * 1601, "mediaUrl": ["ftp://x"], "To": "+1"}
    assert call(send_sms, payload) == (
        400,
        {
            "type": "urn:twilio-functions:problem:validation",
            "title": "Request validation failed",
            "status": 400,
            "detail": "Invalid fields: To, body, mediaUrl, to.",
            "errors": [
                {"field": "To", "message": "is not a known field"},
                {"field": "body", "message": "must be at most 1600 characters"},
                {
                    "field": "mediaUrl",
                    "message": "must be http(s) URLs without user info, backslashes or spaces",
                },
                {"field": "to", "message": "must be in E.164 format, e.g. +14155550100"},
            ],
        },
    )
    assert sandbox.requests() == []


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"body": "x"}, [{"field": "to", "message": "is required"}]),
        ({"to": VALID_TO}, [{"field": "body", "message": "is required unless mediaUrl is given"}]),
        ({"to": VALID_TO, "body": 5}, [{"field": "body", "message": "must be a string"}]),
        ({"to": VALID_TO, "body": "x", "from": "nope"}, [{"field": "from", "message": "must be in E.164 format, e.g. +14155550100"}]),
        ({"to": VALID_TO, "mediaUrl": [f"https://x/{i}" for i in range(11)]}, [{"field": "mediaUrl", "message": "must have at most 10 items"}, {"field": "body", "message": "is required unless mediaUrl is given"}]),
    ],
)  # fmt: skip
def test_field_errors(
    send_sms: Handler, payload: dict[str, Any], errors: list[dict[str, str]]
) -> None:
    status, body = call(send_sms, payload)
    assert (status, body["errors"]) == (400, errors)


def test_body_of_exactly_1600_characters_is_sent(send_sms: Handler, sandbox: Sandbox) -> None:
    assert call(send_sms, {"to": VALID_TO, "body": "ж" * 1600})[0] == 201
    assert sandbox.messages()[0]["num_segments"] == "24"  # UCS-2: 67 per segment


@pytest.mark.parametrize(
    ("body", "content_type", "status", "title", "detail"),
    [
        (b"", "application/json", 400, "Empty body", "A JSON object body is required."),
        (b"{not json", "application/json", 400, "Malformed JSON", "The body is not valid JSON."),
        (b'["+14155550100"]', "application/json", 400, "Malformed JSON", "The body must be a JSON object."),
        (b"\xff\xfe", "application/json", 400, "Malformed JSON", "The body is not valid JSON."),
        (b"to=x", "text/plain", 415, "Unsupported Media Type", "Send application/json or application/x-www-form-urlencoded."),
    ],
)  # fmt: skip
def test_unreadable_bodies(
    send_sms: Handler, body: bytes, content_type: str, status: int, title: str, detail: str
) -> None:
    response = send_sms(
        build_request("POST", URL, body=body, headers={"Content-Type": content_type})
    )
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert body_of(response) == {
        "type": "urn:twilio-functions:problem:bad-request" if status == 400 else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }


def test_wrong_method_is_405_with_allow(send_sms: Handler) -> None:
    response = send_sms(build_request("GET", URL))
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert body_of(response)["detail"] == "GET is not allowed here; use POST."


# Twilio's answers, through the real twilio library -------------------------------------


@pytest.mark.parametrize(
    ("to", "from_", "status", "code", "title"),
    [
        ("+15005550001", VALID_FROM, 422, 21211, "Invalid 'to' phone number"),
        ("+15005550002", VALID_FROM, 422, 21612, "Twilio cannot route to this number"),
        ("+15005550003", VALID_FROM, 403, 21408, "Sending to this region is not enabled"),
        ("+15005550004", VALID_FROM, 409, 21610, "Recipient has opted out (replied STOP)"),
        ("+15005550009", VALID_FROM, 422, 21614, "This number cannot receive SMS"),
    ],
)
def test_twilio_rejections_become_4xx_with_twilio_code(
    send_sms: Handler, to: str, from_: str, status: int, code: int, title: str
) -> None:
    assert call(send_sms, {"to": to, "body": "x"}) == (
        status,
        {
            "type": "urn:twilio-functions:problem:twilio",
            "title": title,
            "status": status,
            "detail": f"Twilio error {code}: {title}.",
            "twilioCode": code,
        },
    )


@pytest.mark.parametrize("sender", ["+15005550001", "+15005550007"])
def test_twilio_rejecting_our_sender_is_a_terse_500(
    send_sms: Handler, app_env: SetEnv, sender: str
) -> None:
    app_env(TWILIO_FROM_NUMBER=sender)
    status, body = call(send_sms, {"to": VALID_TO, "body": "x"})
    assert (status, body["title"], body["detail"]) == (
        500,
        "Server misconfigured",
        "Twilio rejected the configured sender.",
    )


def test_full_sender_queue_is_503_with_retry_after(send_sms: Handler, app_env: SetEnv) -> None:
    app_env(TWILIO_FROM_NUMBER="+15005550008")
    response = send_sms(build_request("POST", URL, json_body={"to": VALID_TO, "body": "x"}))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "60")
    assert body_of(response)["twilioCode"] == 21611


def test_rate_limit_is_retried_then_succeeds(send_sms: Handler, sandbox: Sandbox) -> None:
    status, _body = call(send_sms, {"to": "+15005550428", "body": "x"})
    assert status == 201
    assert [r["to"] for r in sandbox.requests()] == ["+15005550428", "+15005550428"]
    assert len(sandbox.messages()) == 1


def test_persistent_rate_limit_is_503_with_retry_after(send_sms: Handler, sandbox: Sandbox) -> None:
    response = send_sms(build_request("POST", URL, json_body={"to": "+15005550429", "body": "x"}))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert body_of(response) == {
        "type": "urn:twilio-functions:problem:twilio",
        "title": "Twilio is rate limiting us",
        "status": 503,
        "detail": "Too many concurrent requests to Twilio; try again shortly.",
        "twilioCode": 20429,
    }
    assert len(sandbox.requests()) == 3  # the first try and TWILIO_RATE_LIMIT_RETRIES=2


def test_twilio_server_error_is_502_and_not_retried(send_sms: Handler, sandbox: Sandbox) -> None:
    assert call(send_sms, {"to": "+15005550500", "body": "x"}) == (
        502,
        {
            "type": "urn:twilio-functions:problem:twilio",
            "title": "Twilio failed",
            "status": 502,
            # Honest: a 5xx does not say whether Twilio accepted the message.
            "detail": "Twilio answered with an error, which does not say whether it accepted "
            "the request: the message or call may have been sent. Retry with the same "
            "Idempotency-Key: the app then asks Twilio before it sends again.",
            "twilioCode": 20500,
            "outcome": "unknown",
        },
    )
    assert len(sandbox.requests()) == 1


def test_timeout_is_504_and_not_retried(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(TWILIO_TIMEOUT_SECONDS="0.3")
    assert call(send_sms, {"to": "+15005550504", "body": "x"}) == (
        504,
        {
            "type": "about:blank",
            "title": "Twilio timed out",
            "status": 504,
            "detail": "Twilio did not answer in time; it may still have accepted the request, "
            "so the message or call may have been sent. Retry with the same Idempotency-Key: "
            "the app then asks Twilio before it sends again.",
            "outcome": "unknown",
        },
    )
    assert len(sandbox.requests()) == 1


def test_unreachable_twilio_is_502(send_sms: Handler, app_env: SetEnv) -> None:
    app_env(TWILIO_API_BASE_URL="http://127.0.0.1:9")  # discard port: nothing listens
    assert call(send_sms, {"to": VALID_TO, "body": "x"}) == (
        502,
        {
            "type": "about:blank",
            "title": "Twilio unreachable",
            "status": 502,
            "detail": "Could not connect to Twilio; nothing was sent.",
            "outcome": "not-sent",
        },
    )


def test_wrong_credentials_are_a_terse_500(send_sms: Handler, app_env: SetEnv) -> None:
    app_env(TWILIO_AUTH_TOKEN="wrong-token")
    assert call(send_sms, {"to": VALID_TO, "body": "x"}) == (
        500,
        {
            "type": "about:blank",
            "title": "Server misconfigured",
            "status": 500,
            "detail": "The server could not use its Twilio account.",
        },
    )


def test_api_key_credentials_are_used_when_configured(
    send_sms: Handler, app_env: SetEnv, sandbox: Sandbox
) -> None:
    # The sandbox knows no API keys, so being refused proves the key (not the token) was sent.
    app_env(TWILIO_API_KEY_SID="SK" + "1" * 32, TWILIO_API_KEY_SECRET="key-secret")
    assert call(send_sms, {"to": VALID_TO, "body": "x"})[0] == 500
    assert sandbox.messages() == []


@pytest.mark.parametrize(
    "missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"]
)
def test_missing_configuration_is_503_naming_the_setting(
    send_sms: Handler, app_env: SetEnv, missing: str
) -> None:
    app_env(**{missing: None})
    assert call(send_sms, {"to": VALID_TO, "body": "x"}) == (
        503,
        {
            "type": "urn:twilio-functions:problem:missing-setting",
            "title": "Server not configured",
            "status": 503,
            "detail": f"The server is not configured for this operation: setting {missing} is missing.",
            "setting": missing,
        },
    )


def test_invalid_configuration_is_500_naming_the_setting(
    send_sms: Handler, app_env: SetEnv
) -> None:
    app_env(TWILIO_ACCOUNT_SID="oops")
    assert call(send_sms, {"to": VALID_TO, "body": "x"}) == (
        500,
        {
            "type": "urn:twilio-functions:problem:misconfigured",
            "title": "Server misconfigured",
            "status": 500,
            "detail": "The server is misconfigured: setting TWILIO_ACCOUNT_SID must be an Account SID (AC…).",
            "setting": "TWILIO_ACCOUNT_SID",
        },
    )


def test_the_sandbox_account_is_the_one_used(send_sms: Handler, sandbox: Sandbox) -> None:
    call(send_sms, {"to": VALID_TO, "body": "x"})
    assert sandbox.messages()[0]["account_sid"] == ACCOUNT_SID
