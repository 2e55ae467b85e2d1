"""Abuse limits: fixed windows per destination, per caller, and for the whole app.

A leaked key must not be able to pump SMS to premium numbers on our bill. Counters live
in the shared store, so they hold across instances; checks run before Twilio is called.
"""

from __future__ import annotations

import logging
import time

from shared.errors import AppError
from shared.settings import Limit, Settings
from shared.store import Store, StoreUnavailable

_TOO_MANY = "urn:twilio-functions:problem:rate-limited"
OPTED_OUT_CODE = 21610  # Twilio's "recipient replied STOP"

logger = logging.getLogger(__name__)


def check_before_send(
    store: Store, settings: Settings, *, caller: str | None, destination: str, sms: bool
) -> None:
    """Opt-outs (SMS) and limits, before Twilio is asked; fails closed by default.

    `caller=None` charges the destination only: a broadcast charged its caller's quota
    for every recipient when it was accepted.
    """
    try:
        if sms and store.is_opted_out(destination):
            raise opted_out()
        enforce_limits(store, settings, caller=caller, destination=destination)
    except StoreUnavailable:
        if not settings.store_fail_open:
            raise
        logger.warning(
            "State store unavailable: sending without limits (STATE_STORE_FAILURE_MODE=open)"
        )


def opted_out() -> AppError:
    error = AppError(
        "The recipient replied STOP to this sender; Twilio will not deliver until they opt in.",
        status_code=409,
        title="Recipient has opted out (replied STOP)",
        extra={"twilioCode": OPTED_OUT_CODE},
    )
    error.problem_type = "urn:twilio-functions:problem:twilio"
    return error


def enforce_limits(
    store: Store,
    settings: Settings,
    *,
    caller: str | None,
    destination: str | None,
    amount: int = 1,
) -> None:
    """Charge the limits that apply (the caller's also charges the global one), or raise
    429 with Retry-After at the first that is full."""
    now = time.time()
    checks = []
    if destination is not None:
        checks.append(("destination", f"dest:{destination}", settings.limit_per_destination))
    if caller is not None:
        checks.append(("caller", f"caller:{caller}", settings.limit_per_caller))
        checks.append(("global", "global", settings.limit_global))
    for name, counter, limit in checks:
        if limit is None:
            continue
        window = int(now // limit.window_seconds) * limit.window_seconds
        if not store.consume(counter, window, limit.count, amount):
            raise _limited(name, limit, window + limit.window_seconds - now)


def _limited(name: str, limit: Limit, retry_after: float) -> AppError:
    error = AppError(
        f"The {name} limit of {limit.count} per {_period(limit.window_seconds)} is reached; "
        "nothing was sent.",
        status_code=429,
        title="Too many requests",
        headers={"Retry-After": str(max(1, int(retry_after + 0.999)))},
        extra={"limit": name},
    )
    error.problem_type = _TOO_MANY
    return error


def _period(seconds: int) -> str:
    return {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(seconds, f"{seconds} s")
