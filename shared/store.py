"""The app's state: delivery statuses, idempotency keys, rate-limit counters, opt-outs.

One interface, two backends: Azure Table Storage (table_store.py, shared by every
instance and process) and an in-memory store for a single local process
(memory_store.py). Both keep the same contract, and the same contract tests run against
both; state.py picks one. This module holds only what both share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared.delivery_status import Delivery, Kind
from shared.errors import ServiceUnavailable

ClaimState = Literal["new", "in_flight", "done", "mismatch"]
Slots = dict[int, int]  # a sliding-window counter: slot number -> amount counted in it


class StoreUnavailable(ServiceUnavailable):
    problem_type = "urn:twilio-functions:problem:store-unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The state store cannot be reached; nothing was sent. Try again shortly.",
            title="State store unavailable",
            headers={"Retry-After": "5"},
        )


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    response: StoredResponse | None = None


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    expires_at: float
    lease_until: float  # while in flight: after this, the holder is presumed dead
    response: StoredResponse | None = None


@dataclass(frozen=True)
class BroadcastRecord:
    id: str
    caller: str
    fingerprint: str
    body: str
    from_number: str | None
    messaging_service_sid: str | None
    total: int
    chunk_size: int
    rejected: int
    created_at: str
    cancelled: bool = False

    @property
    def chunks(self) -> int:
        return -(-self.total // self.chunk_size)


class Store(Protocol):
    def delivery(self, kind: Kind, sid: str) -> Delivery | None: ...

    def update_delivery(
        self, kind: Kind, sid: str, change: Callable[[Delivery | None], Delivery | None]
    ) -> Delivery | None:
        """Apply `change` atomically (None from `change`: leave the record as it is)."""
        ...

    def claim_key(
        self, scope: str, key: str, fingerprint: str, now: float, ttl: float, lease: float
    ) -> Claim: ...

    def finish_key(self, scope: str, key: str, response: StoredResponse) -> None: ...

    def release_key(self, scope: str, key: str) -> None: ...

    def update_counter(self, counter: str, change: Callable[[Slots], Slots | None]) -> None:
        """Apply `change` to the counter's slots atomically (None: leave them as they are).
        `change` may run more than once (on a lost race); only its last result counts."""
        ...

    def add_opt_out(self, number: str) -> None: ...

    def is_opted_out(self, number: str) -> bool: ...

    # Broadcasts: the record, its recipients in chunks, one result per recipient.
    def create_broadcast(self, record: BroadcastRecord) -> bool:
        """Insert the record unless one with this id exists (then False)."""
        ...

    def add_broadcast_chunks(self, broadcast_id: str, chunks: list[list[str]]) -> None: ...

    def forget_broadcast(self, broadcast_id: str) -> None: ...

    def broadcast(self, broadcast_id: str) -> BroadcastRecord | None: ...

    def broadcast_chunk(self, broadcast_id: str, chunk: int) -> list[str]: ...

    def cancel_broadcast(self, broadcast_id: str) -> bool: ...

    def record_recipient_result(
        self, broadcast_id: str, index: int, result: dict[str, Any]
    ) -> None: ...

    def recipient_results(self, broadcast_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """Results for recipients offset … offset+limit-1 that have one, in index order."""
        ...


def decide_claim(record: IdempotencyRecord | None, fingerprint: str, now: float) -> ClaimState:
    """What a new request with this key should do, given what is stored."""
    if record is None or record.expires_at <= now:
        return "new"
    if record.fingerprint != fingerprint:
        return "mismatch"
    if record.response is not None:
        return "done"
    return "in_flight" if record.lease_until > now else "new"
