"""The one clock: limits, idempotency leases and timestamps read time here.

Tests replace it (`use_clock`) to put a request exactly on a window boundary instead of
hoping the wall clock does not cross one mid-test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]  # seconds since the epoch, like time.time

_clock: Clock = time.time


def now() -> float:
    return _clock()


def use_clock(clock: Clock | None) -> None:
    """Read time from `clock` from now on (None: the system clock again)."""
    global _clock
    _clock = clock or time.time


def iso_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, as stored and shown."""
    return datetime.fromtimestamp(now(), UTC).isoformat(timespec="milliseconds")
