"""Public URLs we hand to Twilio, and verification of the requests Twilio signs.

Twilio signs the exact URL it was given. Behind Azure front ends the worker may see
http instead of https or an internal host, so we never trust the incoming scheme, host
or X-Forwarded-* headers: the URL is rebuilt from PUBLIC_BASE_URL plus the request's
path and its *raw* query string (req.params is a dict that drops duplicates and blanks).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import azure.functions as func
from twilio.request_validator import RequestValidator

from shared.errors import Forbidden
from shared.http_io import WEBHOOK_MAX_BYTES, check_body_size
from shared.settings import Settings

ROUTE_PREFIX = "api"  # must match extensions.http.routePrefix in host.json
SIGNATURE_HEADER = "X-Twilio-Signature"

logger = logging.getLogger(__name__)


def function_url(settings: Settings, route: str, query: Mapping[str, str] | None = None) -> str:
    """The public URL of one of our own routes, as Twilio must call (and sign) it."""
    base = settings.require("PUBLIC_BASE_URL")
    url = f"{base}/{ROUTE_PREFIX}/{route}"
    return f"{url}?{urlencode(query)}" if query else url


def public_url(req: func.HttpRequest, settings: Settings) -> str:
    """The URL Twilio requested, rebuilt on PUBLIC_BASE_URL with the raw query."""
    parts = urlsplit(req.url)
    base = settings.require("PUBLIC_BASE_URL")
    return f"{base}{parts.path}?{parts.query}" if parts.query else f"{base}{parts.path}"


def verify_twilio_request(req: func.HttpRequest, settings: Settings) -> None:
    """Raise Forbidden unless X-Twilio-Signature matches this request. The body's size is
    checked first: an anonymous caller must not get a large body parsed and hashed."""
    check_body_size(req, WEBHOOK_MAX_BYTES)
    if not settings.validate_signatures:
        logger.warning("Twilio signature validation is OFF (TWILIO_VALIDATE_SIGNATURES=false)")
        return
    token = settings.require("TWILIO_AUTH_TOKEN")
    signature = req.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise _rejected(f"Missing {SIGNATURE_HEADER} header.")
    url = public_url(req, settings)
    try:
        valid = RequestValidator(token).validate(url, _signed_params(req, url), signature)
    except (TypeError, ValueError, KeyError):
        # The validator raises instead of answering False on some malformed inputs
        # (e.g. a raw body without bodySHA256); a bad request is still just a bad request.
        valid = False
    if not valid:
        # Scheme, host and path tell a misconfigured PUBLIC_BASE_URL; the query would only
        # add phone numbers and message text to the logs.
        logger.warning(
            "Twilio signature mismatch: validated against %s, request came to %s",
            _without_query(url), _without_query(req.url),
        )  # fmt: skip
        raise _rejected(f"{SIGNATURE_HEADER} does not match this request.")


def _signed_params(req: func.HttpRequest, url: str) -> object:
    content_type = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if req.method != "POST":
        return {}
    if content_type == "application/x-www-form-urlencoded":
        # The werkzeug MultiDict as is: the validator reads repeated keys with getlist.
        return req.form
    if "bodySHA256=" in urlsplit(url).query:
        return req.get_body().decode("utf-8", errors="replace")
    if req.get_body():
        raise _rejected("A signed body must be form-encoded or carry bodySHA256.")
    return {}


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _rejected(detail: str) -> Forbidden:
    return Forbidden(detail, title="Invalid Twilio signature", extra={"rule": "twilio-signature"})
