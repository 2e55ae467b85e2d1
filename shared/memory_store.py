"""The Store in this process's memory: for the local host and tests (one process only)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from shared import clock
from shared.delivery_status import Delivery, Kind
from shared.store import BroadcastRecord, IdempotencyRecord, Slots


class MemoryStore:
    """Everything in this process's memory: for the local host and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: dict[tuple[str, str], Delivery] = {}
        self._keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self._counters: dict[str, Slots] = {}
        # When each delivery and counter was last written (clock time), as the table keeps it.
        self._written: dict[tuple[str, str], float] = {}
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
                self._written[("delivery", f"{kind}:{sid}")] = clock.now()
            return updated or current

    def update_key(
        self,
        scope: str,
        key: str,
        change: Callable[[IdempotencyRecord | None], IdempotencyRecord | None],
    ) -> IdempotencyRecord | None:
        with self._lock:
            current = self._keys.get((scope, key))
            updated = change(current)
            if updated is not None:
                self._keys[(scope, key)] = updated
            return updated or current

    def update_counter(self, counter: str, change: Callable[[Slots], Slots | None]) -> None:
        with self._lock:
            updated = change(dict(self._counters.get(counter, {})))
            if updated is not None:
                self._counters[counter] = dict(updated)
                self._written[("counter", counter)] = clock.now()

    def add_opt_out(self, number: str) -> None:
        with self._lock:
            self._opt_outs.add(number)

    def is_opted_out(self, number: str) -> bool:
        with self._lock:
            return number in self._opt_outs

    def purge_keys(self, now: float) -> int:
        with self._lock:
            expired = [key for key, record in self._keys.items() if record.expires_at <= now]
            for key in expired:
                del self._keys[key]
            return len(expired)

    def purge_counters(self, idle_since: float) -> int:
        with self._lock:
            idle = [c for c in self._counters if self._written[("counter", c)] < idle_since]
            for counter in idle:
                del self._counters[counter], self._written[("counter", counter)]
            return len(idle)

    def purge_deliveries(self, unchanged_since: float) -> int:
        with self._lock:
            old = [
                (kind, sid)
                for kind, sid in self._deliveries
                if self._written[("delivery", f"{kind}:{sid}")] < unchanged_since
            ]
            for kind, sid in old:
                del self._deliveries[(kind, sid)], self._written[("delivery", f"{kind}:{sid}")]
            return len(old)

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

    def update_broadcast(
        self, broadcast_id: str, change: Callable[[BroadcastRecord], BroadcastRecord]
    ) -> BroadcastRecord | None:
        with self._lock:
            record = self._broadcasts.get(broadcast_id)
            if record is None:
                return None
            self._broadcasts[broadcast_id] = updated = change(record)
            return updated

    def record_recipient_result(
        self, broadcast_id: str, index: int, result: dict[str, Any]
    ) -> None:
        with self._lock:
            self._results[(broadcast_id, index)] = dict(result)

    def recipient_results(self, broadcast_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            found = (self._results.get((broadcast_id, i)) for i in range(offset, offset + limit))
            return [dict(result) for result in found if result is not None]
