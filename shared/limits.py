"""Abuse limits: sliding windows per caller, for the whole app and per destination.

A leaked key must not be able to pump SMS on our bill, nor spend a stranger's quota.
Counters live in the shared store, so they hold across instances; they are checked before
Twilio is asked. A limit of N per window counts in SLOTS slots per window, and a slot
counts for as long as any part of it lies inside the last window: no stretch of one
window's length ever holds more than N (a fixed window lets 2N through around its
boundary), at the price of waiting up to one slot longer than strictly needed.

A request is charged against every limit that applies or against none: a charge taken
before another limit refuses is given back, so a refused request spends nobody's quota.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import AppError
from shared.settings import Limit, Settings
from shared.store import Slots, Store, StoreUnavailable

SLOTS = 60
OPTED_OUT_CODE = 21610  # Twilio's "recipient replied STOP"
_TOO_MANY = "urn:twilio-functions:problem:rate-limited"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Charge:
    """What one limit took, so that it can be given back."""

    counter: str
    window_seconds: int
    slot: int
    amount: int


def check_before_send(
    store: Store,
    settings: Settings,
    *,
    caller: str | None,
    destination: str,
    sms: bool,
    now: float,
) -> None:
    """Opt-outs (SMS) and limits, before Twilio is asked; fails closed by default.

    `caller=None` charges the destination only: a broadcast charged its caller's quota
    for every recipient when it was accepted.
    """
    try:
        if sms and store.is_opted_out(destination):
            raise opted_out()
        enforce_limits(store, settings, caller=caller, destination=destination, now=now)
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
        extra={"twilioCode": OPTED_OUT_CODE, "rule": "opt-out"},
    )
    error.problem_type = "urn:twilio-functions:problem:twilio"
    return error


def enforce_limits(
    store: Store,
    settings: Settings,
    *,
    caller: str | None,
    destination: str | None,
    now: float,
    amount: int = 1,
) -> list[Charge]:
    """Charge every limit that applies, or raise 429 naming the one that is full and
    leave every counter as it was. The caller's own limit is tried first, so a caller
    over it never touches the global or a destination's counter at all."""
    limits: list[tuple[str, str, Limit | None]] = []
    if caller is not None:
        limits.append(("caller", f"caller:{caller}", settings.limit_per_caller))
        limits.append(("global", "global", settings.limit_global))
    if destination is not None:
        limits.append(("destination", f"destination:{destination}", settings.limit_per_destination))
    charged: list[Charge] = []
    try:
        for name, counter, limit in limits:
            if limit is None:
                continue
            charged.append(_charge(store, name, counter_key(counter), limit, now, amount))
    except BaseException:
        give_back(store, charged)
        raise
    return charged


def give_back(store: Store, charges: list[Charge]) -> None:
    for charge in charges:
        try:
            store.update_counter(charge.counter, functools.partial(_refund, charge=charge))
        except StoreUnavailable:
            logger.error("Could not give back a limit charge; it expires with its window")


def counter_key(counter: str) -> str:
    """Counters are stored under a digest: no phone number or caller id in the store."""
    return hashlib.sha256(counter.encode()).hexdigest()


def _charge(store: Store, name: str, counter: str, limit: Limit, now: float, amount: int) -> Charge:
    slot_seconds = limit.window_seconds / SLOTS
    slot = int(now // slot_seconds)
    refused: list[float | None] = []

    def take(slots: Slots) -> Slots | None:
        refused.clear()
        live = _live(slots, limit, now)
        if sum(live.values()) + amount > limit.count:
            refused.append(_retry_after(live, limit, now, amount))
            return None
        return {**live, slot: live.get(slot, 0) + amount}

    store.update_counter(counter, take)
    if refused:
        raise _limited(name, limit, refused[0], amount)
    return Charge(counter, limit.window_seconds, slot, amount)


def _live(slots: Mapping[int, int], limit: Limit, now: float) -> dict[int, int]:
    """The slots of which some part lies within the last window."""
    slot_seconds = limit.window_seconds / SLOTS
    start = now - limit.window_seconds
    return {s: n for s, n in slots.items() if (s + 1) * slot_seconds > start and n > 0}


def _retry_after(live: Mapping[int, int], limit: Limit, now: float, amount: int) -> float | None:
    """Seconds until `amount` fits, as the oldest slots leave the window; None: never."""
    if amount > limit.count:
        return None
    slot_seconds = limit.window_seconds / SLOTS
    excess = sum(live.values()) + amount - limit.count
    for slot in sorted(live):
        excess -= live[slot]
        if excess <= 0:
            return (slot + 1) * slot_seconds + limit.window_seconds - now
    raise AssertionError("the live slots hold more than the excess")  # pragma: no cover


def _refund(slots: Slots, charge: Charge) -> Slots | None:
    if charge.slot not in slots:
        return None  # its window has passed already
    left = slots[charge.slot] - charge.amount
    return {s: n for s, n in {**slots, charge.slot: left}.items() if n > 0}


def _limited(name: str, limit: Limit, retry_after: float | None, amount: int) -> AppError:
    period = _period(limit.window_seconds)
    if retry_after is None:
        detail = (
            f"This needs {amount}, more than the {name} limit of {limit.count} per {period} "
            "allows at once; nothing was sent."
        )
        headers = {}
    else:
        detail = f"The {name} limit of {limit.count} per {period} is reached; nothing was sent."
        # Whole seconds, rounded up: retrying on time must succeed.
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}
    error = AppError(
        detail,
        status_code=429,
        title="Too many requests",
        headers=headers,
        extra={"rule": "limit", "limit": name},
    )
    error.problem_type = _TOO_MANY
    return error


def _period(seconds: int) -> str:
    return {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(seconds, f"{seconds} s")
