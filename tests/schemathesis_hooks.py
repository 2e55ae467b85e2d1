"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): sign the requests meant
for Twilio's routes as Twilio would, so the fuzzer reaches the TwiML, StatusCallback,
IncomingCall and IncomingSms handlers instead of stopping at 403. The token comes from SIGNING_TOKEN."""

from __future__ import annotations

import os
from typing import Any

import requests
import schemathesis
from twilio.request_validator import RequestValidator

TWILIO_ROUTES = (
    "/TwiML",
    "/StatusCallback",
    "/IncomingCall",
    "/IncomingCall/DialAction",
    "/IncomingCall/RecordAction",
    "/IncomingCall/RecordingStatus",
    "/IncomingSms",
)


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    _utf8_header_values(case)
    if case.path not in TWILIO_ROUTES:
        return
    transport = case.as_transport_kwargs()
    data = transport.get("data")
    try:
        prepared = requests.Request(
            transport["method"], transport["url"], params=transport.get("params"), data=data
        ).prepare()
        form = prepared.headers.get("Content-Type", "").startswith(
            "application/x-www-form-urlencoded"
        )
        params = data if isinstance(data, dict) and form else {}
        signature = RequestValidator(os.environ["SIGNING_TOKEN"]).compute_signature(
            prepared.url, params
        )
    except (TypeError, ValueError):
        return  # a body no client could send (negative cases): it goes unsigned, 403 is right
    case.headers = {**(case.headers or {}), "X-Twilio-Signature": signature}


def _utf8_header_values(case: Any) -> None:
    """Send non-ASCII header values as UTF-8, as mobile HTTP clients do. requests would send
    them as Latin-1, which the Functions host's Kestrel refuses with an empty 400 before any
    function runs; in UTF-8 they reach the app, whose own answer is what is under test."""
    for name, value in list((case.headers or {}).items()):
        if isinstance(value, str) and not value.isascii():
            case.headers[name] = value.encode("utf-8", "surrogatepass").decode("latin-1")
