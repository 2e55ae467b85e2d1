"""Abuse limits: sliding windows per caller, for the whole app and per destination.

A leaked key must not be able to pump SMS on our bill, nor spend a stranger's quota.
Counters live in the shared store, so they hold across instances; they are checked before
Twilio is asked. A limit of N per window counts in SLOTS slots per window, and a slot
counts for as long as any part of it lies inside the last window: no stretch of one
window's length ever holds more than N (a fixed window lets 2N through around its
boundary), at the price of waiting up to one slot longer than strictly needed.

A request is charged against every limit that applies or against none, in one atomic
write after one read: a refused request spends nobody's quota.

Each limit counts in up to COUNTER_SHARDS rows, so that concurrent requests from many
instances write different rows instead of queueing on one: every request reads all of a
limit's rows and adds to one of them, picked at random. Requests racing from the same
reading may each add to a different row, so at most limit + shards - 1 pass; a limit
below 200 uses one row and is exact, a larger one one row per 100 of its count, up to
COUNTER_SHARDS, and overshoots by under 1 %.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared import parallel
from shared.errors import AppError
from shared.settings import Limit, Settings
from shared.store import COUNTER_SHARDS, Shards, Slots, Store, StoreUnavailable

SLOTS = 60
OPTED_OUT_CODE = 21610  # Twilio's "recipient replied STOP"
_TOO_MANY = "urn:twilio-functions:problem:rate-limited"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """One limit as it applies to one request: its name in a 429, and its counter."""

    name: str
    limit: Limit
    counter: str

    @property
    def shards(self) -> int:
        """How many of the counter's rows this limit writes to (it reads them all)."""
        return max(1, min(COUNTER_SHARDS, self.limit.count // 100))


def check_before_send(
    store: Store,
    settings: Settings,
    *,
    caller: str | None,
    destination: str,
    sms_sender: str | None,
    now: float,
) -> None:
    """Opt-outs (SMS: of `destination` from `sms_sender`) and limits, before Twilio is
    asked; fails closed by default.

    The opt-out is read beside the counters, and decided before they are written: two
    store round trips in all. `caller=None` charges the destination only: a broadcast
    charged its caller's quota for every recipient when it was accepted.
    """
    try:
        opted = None
        if sms_sender is not None:
            sender = sms_sender
            opted = parallel.start(
                lambda: store.is_opted_out(destination, sender), beside=store.remote
            )
        try:
            enforce_limits(
                store, settings, caller=caller, destination=destination, now=now,
                refuse=opted.result if opted else None,
            )  # fmt: skip
        except AppError:  # full, but the opt-out is the recipient's own answer: it comes first
            if opted is None or not opted.result():
                raise
        if opted is not None and opted.result():
            raise opted_out()
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


def rules(settings: Settings, *, caller: str | None, destination: str | None) -> list[Rule]:
    """The limits that apply, the caller's own first (the first full one names the 429)."""
    applying: list[tuple[str, str, Limit | None]] = []
    if caller is not None:
        applying.append(("caller", f"caller:{caller}", settings.limit_per_caller))
        applying.append(("global", "global", settings.limit_global))
    if destination is not None:
        applying.append(
            ("destination", f"destination:{destination}", settings.limit_per_destination)
        )
    return [
        Rule(name, limit, counter_name(counter, limit))
        for name, counter, limit in applying
        if limit is not None
    ]


def enforce_limits(
    store: Store,
    settings: Settings,
    *,
    caller: str | None,
    destination: str | None,
    now: float,
    amount: int = 1,
    refuse: Callable[[], bool] | None = None,
) -> None:
    """Charge every limit that applies, or raise 429 naming the first that is full and
    leave every counter as it was. `refuse`, asked once the counters are read, vetoes
    the charge (the recipient opted out): nothing is written then either."""
    applying = rules(settings, caller=caller, destination=destination)
    if not applying:
        return
    full: list[tuple[Rule, float | None]] = []

    def charge(current: Mapping[str, Shards]) -> dict[tuple[str, int], Slots] | None:
        full.clear()
        if refuse is not None and refuse():
            return None
        updates: dict[tuple[str, int], Slots] = {}
        for rule in applying:
            live = [_live(slots, rule.limit, now) for slots in current[rule.counter]]
            counted = _merged(live)
            if sum(counted.values()) + amount > rule.limit.count:
                full.append((rule, _retry_after(counted, rule.limit, now, amount)))
                return None
            pick = random.randrange(rule.shards)  # a fresh pick on every try: losers move
            slot = int(now // (rule.limit.window_seconds / SLOTS))
            updates[(rule.counter, pick)] = {**live[pick], slot: live[pick].get(slot, 0) + amount}
        return updates

    store.update_counters([rule.counter for rule in applying], charge)
    if full:
        rule, retry_after = full[0]
        raise _limited(rule.name, rule.limit, retry_after, amount)


def counter_name(counter: str, limit: Limit) -> str:
    """A counter's name in the store: a digest (no phone number or caller id in the
    store) that includes the window, since slots of another window length mean other
    times. Not the count: every request reads all the rows, so a changed count keeps
    what was counted."""
    return hashlib.sha256(f"{counter}|{limit.window_seconds}".encode()).hexdigest()


def _merged(shards: list[dict[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for slots in shards:
        for slot, n in slots.items():
            merged[slot] = merged.get(slot, 0) + n
    return merged


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
