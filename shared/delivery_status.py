"""How a message's or call's status may move, given callbacks that arrive late and twice.

Twilio retries callbacks and sends them concurrently, so they arrive duplicated and out
of order. A status only moves forward, a duplicate changes nothing, and a terminal status
stays terminal (the one exception: WhatsApp's `read` after `delivered`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["message", "call"]

_MESSAGE_RANK = {
    "accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 5,
}  # fmt: skip
_CALL_RANK = {
    "queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3,
    "completed": 4, "busy": 4, "no-answer": 4, "failed": 4, "canceled": 4,
}  # fmt: skip
_RANKS: dict[Kind, dict[str, int]] = {"message": _MESSAGE_RANK, "call": _CALL_RANK}
_TERMINAL_RANK = 4


@dataclass(frozen=True)
class StatusEvent:
    status: str
    at: str  # ISO 8601, UTC
    error_code: int | None = None
    duration: int | None = None  # calls: seconds, on completion


@dataclass(frozen=True)
class Delivery:
    kind: Kind
    sid: str
    status: str
    history: tuple[StatusEvent, ...] = ()
    error_code: int | None = None
    duration: int | None = None
    caller: str | None = None  # who created it through us; None: only Twilio has told us of it
    to: str | None = None
    created_at: str | None = field(default=None)
    attempt: str | None = None  # the Idempotency-Key (its digest) it was created under


def known(kind: Kind, status: str) -> bool:
    """Whether `status` is one of Twilio's for `kind` (others are never stored)."""
    return status in _RANKS[kind]


def advance(current: Delivery | None, kind: Kind, sid: str, event: StatusEvent) -> Delivery | None:
    """The record after `event`, or None when the event changes nothing."""
    ranks = _RANKS[kind]
    if event.status not in ranks:
        return None
    if current is None:
        return Delivery(
            kind=kind, sid=sid, status=event.status, history=(event,),
            error_code=event.error_code, duration=event.duration,
        )  # fmt: skip
    if not _moves_forward(ranks, current.status, event.status):
        return None
    return replace(
        current,
        status=event.status,
        history=(*current.history, event),
        error_code=event.error_code if event.error_code is not None else current.error_code,
        duration=event.duration if event.duration is not None else current.duration,
    )


@dataclass(frozen=True)
class Created:
    """What we know of a SID from its create: who made it, to whom, and Twilio's answer."""

    caller: str
    to: str
    status: str
    at: str
    attempt: str | None = None  # the Idempotency-Key (its digest) it was created under


def fold(
    kind: Kind, sid: str, created: Created | None, events: list[StatusEvent]
) -> Delivery | None:
    """The record from what was stored, each part written once and never read first: the
    create's answer (its history starts there, whoever came first), then the callbacks in
    the order they arrived (as the store gives them), each applied only if it moves the
    status forward: the same record as if each had been applied on arrival."""
    current: Delivery | None = None
    if created is not None:
        current = Delivery(
            kind, sid, created.status, (StatusEvent(created.status, created.at),),
            caller=created.caller, to=created.to, created_at=created.at, attempt=created.attempt,
        )  # fmt: skip
    for event in events:
        current = advance(current, kind, sid, event) or current
    return current


def _moves_forward(ranks: dict[str, int], old: str, new: str) -> bool:
    old_rank, new_rank = ranks.get(old, -1), ranks[new]
    if old == new:
        return False
    if old_rank >= _TERMINAL_RANK:
        return old == "delivered" and new == "read"
    return new_rank > old_rank
