"""Translate what Twilio (or the road to it) said into our HTTP answer.

Codes the caller can act on become 4xx carrying `twilioCode`; our own
misconfiguration becomes a terse 500; Twilio's trouble becomes 502/503/504.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Literal

from twilio.base.exceptions import TwilioRestException

from shared.errors import AppError

# What a failed create means for the message or call: Twilio provably did not take it
# ("not-sent": a retry may send), refused it for good ("refused": the same answer every
# time), or may have taken it ("unknown": a retry must ask Twilio before sending again).
Outcome = Literal["not-sent", "refused", "unknown"]
_RETRY_WITH_KEY = (
    "Retry with the same Idempotency-Key: the app then asks Twilio before it sends again."
)

_TWILIO_PROBLEM = "urn:twilio-functions:problem:twilio"
# Twilio's 429 is its concurrency limit, which frees within a second or so; a full
# sender queue (21611) drains at about one message per second, so wait longer.
_RETRY_AFTER_RATE_LIMITED = {"Retry-After": "1"}
_RETRY_AFTER_QUEUE_FULL = {"Retry-After": "60"}

# code -> (our status, title)
_KNOWN_CODES: dict[int, tuple[int, str]] = {
    21211: (422, "Invalid 'to' phone number"),
    21217: (422, "Invalid 'to' phone number"),
    21612: (422, "Twilio cannot route to this number"),
    21214: (422, "Twilio cannot reach this number"),
    21614: (422, "This number cannot receive SMS"),
    21620: (422, "Invalid media URL"),
    21408: (403, "Sending to this region is not enabled"),
    21215: (403, "Calling this region is not enabled"),
    21608: (403, "Trial accounts can only reach verified numbers"),
    21216: (403, "This number is blocked for the account"),
    21610: (409, "Recipient has opted out (replied STOP)"),
    21611: (503, "The sender's outgoing queue is full"),
    21210: (500, "Server misconfigured"),  # sender not verified for the account
    21212: (500, "Server misconfigured"),  # invalid sender number
    21606: (500, "Server misconfigured"),  # sender cannot send SMS
    21701: (500, "Server misconfigured"),  # Messaging Service does not exist
    21705: (500, "Server misconfigured"),  # Messaging Service SID is invalid
}


def from_twilio_exception(exc: TwilioRestException) -> AppError:
    code = exc.code if isinstance(exc.code, int) else None
    extra: dict[str, object] = {"twilioCode": code} if code is not None else {}
    if code in _KNOWN_CODES:
        status, title = _KNOWN_CODES[code]
        if status >= 500 and status != 503:
            return AppError(
                "Twilio rejected the configured sender.",
                status_code=status,
                title=title,
                extra=extra,
            )
        headers = _RETRY_AFTER_QUEUE_FULL if status == 503 else None
        return _twilio_error(status, title, f"Twilio error {code}: {title}.", extra, headers)
    if exc.status == 429:
        return _twilio_error(
            503,
            "Twilio is rate limiting us",
            "Too many concurrent requests to Twilio; try again shortly.",
            extra,
            _RETRY_AFTER_RATE_LIMITED,
        )
    if exc.status in (401, 403, 404):
        # Wrong credentials or account: nothing the caller can fix or should learn about.
        return AppError(
            "The server could not use its Twilio account.",
            status_code=500,
            title="Server misconfigured",
        )
    if exc.status >= 500:
        return _twilio_error(
            502,
            "Twilio failed",
            f"Twilio answered with an error, which does not say whether it accepted the "
            f"request: the message or call may have been sent. {_RETRY_WITH_KEY}",
            {**extra, "outcome": "unknown"},
        )
    return _twilio_error(
        422, "Twilio rejected the request", f"Twilio rejected the request (error {code}).", extra
    )


def from_transport_exception(exc: BaseException) -> AppError | None:
    """Timeouts and connection failures on the way to Twilio, else None."""
    import requests

    if _never_connected(exc):
        return AppError(
            "Could not connect to Twilio; nothing was sent.",
            status_code=HTTPStatus.BAD_GATEWAY,
            title="Twilio unreachable",
            extra={"outcome": "not-sent"},
        )
    if isinstance(exc, requests.Timeout):
        return AppError(
            "Twilio did not answer in time; it may still have accepted the request, so the "
            f"message or call may have been sent. {_RETRY_WITH_KEY}",
            status_code=HTTPStatus.GATEWAY_TIMEOUT,
            title="Twilio timed out",
            extra={"outcome": "unknown"},
        )
    if isinstance(exc, requests.ConnectionError):
        return AppError(
            "The connection to Twilio broke after the request was sent: the message or call "
            f"may have been sent. {_RETRY_WITH_KEY}",
            status_code=HTTPStatus.BAD_GATEWAY,
            title="Twilio connection lost",
            extra={"outcome": "unknown"},
        )
    return None


def outcome(exc: BaseException) -> Outcome:
    """What a create that raised `exc` did at Twilio, as far as anyone can tell."""
    if isinstance(exc, TwilioRestException):
        if exc.status >= 500:
            return "unknown"
        # 429 was not processed; our own misconfiguration may be fixed: both may send later.
        mapped = from_twilio_exception(exc).status_code
        return "not-sent" if exc.status == 429 or mapped >= 500 else "refused"
    if isinstance(exc, AppError):  # our own refusals, before Twilio was asked
        return "not-sent" if exc.status_code == 429 or exc.status_code >= 500 else "refused"
    transport = from_transport_exception(exc)
    if transport is not None:
        return "not-sent" if transport.extra["outcome"] == "not-sent" else "unknown"
    return "unknown"  # a bug after Twilio was called: assume it may have sent


def _never_connected(exc: BaseException) -> bool:
    """Failed before a byte of the request was sent: only connection attempts qualify. A
    reset or protocol error after sending is not this, whatever requests calls it."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    cause = exc.args[0]
    reason = cause.reason if isinstance(cause, MaxRetryError) else cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _twilio_error(
    status: int,
    title: str,
    detail: str,
    extra: dict[str, object],
    headers: dict[str, str] | None = None,
) -> AppError:
    error = AppError(detail, status_code=status, title=title, extra=extra, headers=headers)
    error.problem_type = _TWILIO_PROBLEM
    return error
