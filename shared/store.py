"""The app's state: delivery statuses, idempotency keys, rate-limit counters, opt-outs.

One interface, two backends: Azure Table Storage (table_store.py, shared by every
instance and process) and an in-memory store for a single local process. Both keep the
same contract, and the same contract tests run against both.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from shared.delivery_status import Delivery, Kind
from shared.errors import ServiceUnavailable
from shared.settings import Settings

logger = logging.getLogger(__name__)

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


def get_store(settings: Settings) -> Store:
    """The process-wide store for these settings, built on first use."""
    return _store_for(settings)


@functools.lru_cache(maxsize=1)
def _store_for(settings: Settings) -> Store:
    if settings.store_connection is None:
        logger.warning("No storage configured: using the in-memory store (one process only)")
        return MemoryStore()
    from shared.table_store import TableStore  # azure-data-tables only where it is used

    return TableStore(settings.store_connection.reveal(), settings.store_table_prefix)


def decide_claim(record: IdempotencyRecord | None, fingerprint: str, now: float) -> ClaimState:
    """What a new request with this key should do, given what is stored."""
    if record is None or record.expires_at <= now:
        return "new"
    if record.fingerprint != fingerprint:
        return "mismatch"
    if record.response is not None:
        return "done"
    return "in_flight" if record.lease_until > now else "new"


class MemoryStore:
    """Everything in this process's memory: for the local host and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: dict[tuple[str, str], Delivery] = {}
        self._keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self._counters: dict[str, Slots] = {}
        self._opt_outs: set[str] = set()
        self._broadcasts: dict[str, BroadcastRecord] = {}
        self._chunks: dict[tuple[str, int], list[str]] = {}
        self._results: dict[tuple[str, int], dict[str, Any]] = {}

    def delivery(self, kind: Kind, sid: str) -> Delivery | None:
        with self._lock:
            return self._deliveries.get((kind, sid))

    def update_delivery(
        self, kind: Kind, sid: str, change: Callable[[Delivery | None], Delivery | None]
    ) -> Delivery | None:
        with self._lock:
            current = self._deliveries.get((kind, sid))
            updated = change(current)
            if updated is not None:
                self._deliveries[(kind, sid)] = updated
            return updated or current

    def claim_key(
        self, scope: str, key: str, fingerprint: str, now: float, ttl: float, lease: float
    ) -> Claim:
        with self._lock:
            record = self._keys.get((scope, key))
            state = decide_claim(record, fingerprint, now)
            if state == "new":
                self._keys[(scope, key)] = IdempotencyRecord(fingerprint, now + ttl, now + lease)
            return Claim(state, record.response if record and state == "done" else None)

    def finish_key(self, scope: str, key: str, response: StoredResponse) -> None:
        with self._lock:
            record = self._keys[(scope, key)]
            self._keys[(scope, key)] = replace(record, response=response)

    def release_key(self, scope: str, key: str) -> None:
        with self._lock:
            self._keys.pop((scope, key), None)

    def update_counter(self, counter: str, change: Callable[[Slots], Slots | None]) -> None:
        with self._lock:
            updated = change(dict(self._counters.get(counter, {})))
            if updated is not None:
                self._counters[counter] = dict(updated)

    def add_opt_out(self, number: str) -> None:
        with self._lock:
            self._opt_outs.add(number)

    def is_opted_out(self, number: str) -> bool:
        with self._lock:
            return number in self._opt_outs

    def create_broadcast(self, record: BroadcastRecord) -> bool:
        with self._lock:
            if record.id in self._broadcasts:
                return False
            self._broadcasts[record.id] = record
            return True

    def add_broadcast_chunks(self, broadcast_id: str, chunks: list[list[str]]) -> None:
        with self._lock:
            for index, chunk in enumerate(chunks):
                self._chunks[(broadcast_id, index)] = list(chunk)

    def forget_broadcast(self, broadcast_id: str) -> None:
        with self._lock:
            self._broadcasts.pop(broadcast_id, None)

    def broadcast(self, broadcast_id: str) -> BroadcastRecord | None:
        with self._lock:
            return self._broadcasts.get(broadcast_id)

    def broadcast_chunk(self, broadcast_id: str, chunk: int) -> list[str]:
        with self._lock:
            return list(self._chunks.get((broadcast_id, chunk), []))

    def cancel_broadcast(self, broadcast_id: str) -> bool:
        with self._lock:
            record = self._broadcasts.get(broadcast_id)
            if record is None:
                return False
            self._broadcasts[broadcast_id] = replace(record, cancelled=True)
            return True

    def record_recipient_result(
        self, broadcast_id: str, index: int, result: dict[str, Any]
    ) -> None:
        with self._lock:
            self._results[(broadcast_id, index)] = dict(result)

    def recipient_results(self, broadcast_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            found = (self._results.get((broadcast_id, i)) for i in range(offset, offset + limit))
            return [dict(result) for result in found if result is not None]
