"""The Store in this process's memory: for the local host and tests (one process only)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shared import clock
from shared.delivery_status import Created, Delivery, Kind, StatusEvent, fold
from shared.store import (
    COUNTER_SHARDS,
    BroadcastRecord,
    ConversationMessage,
    ConversationPage,
    IdempotencyRecord,
    Shards,
    Slots,
    Versioned,
    broadcast_finished,
    conversation_position,
)
from shared.voicemail import CallParties, RecordingEvent, Voicemail, newest_first
from shared.voicemail import fold as fold_voicemails


class MemoryStore:
    """Everything in this process's memory: for the local host and tests."""

    remote = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created: dict[tuple[str, str], Created] = {}
        self._events: dict[tuple[str, str], dict[str, StatusEvent]] = {}
        self._keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._counters: dict[tuple[str, int], Slots] = {}
        # When each delivery, counter, call's voicemail and broadcast (any of its parts) was
        # last written (clock time), as the table keeps it.
        self._written: dict[tuple[str, str], float] = {}
        self._opt_outs: set[tuple[str, str]] = set()  # (number, sender)
        # Its own lock: update_counters' `change` waits on an opt-out read (limits.py).
        self._opt_out_lock = threading.Lock()
        self._broadcasts: dict[str, BroadcastRecord] = {}
        self._chunks: dict[tuple[str, int], list[str]] = {}
        self._results: dict[tuple[str, int], dict[str, Any]] = {}
        self._parties: dict[str, CallParties] = {}
        self._recordings: dict[str, dict[tuple[str, str], RecordingEvent]] = {}
        # Conversations: the callers that sent to each number (and when they last did),
        # each caller's view of each number, the inbound messages by SID.
        self._contacts: dict[str, dict[str, float]] = {}
        self._views: dict[tuple[str, str], dict[str, ConversationMessage]] = {}
        self._inbound: dict[str, ConversationMessage] = {}

    def delivery(self, kind: Kind, sid: str) -> Delivery | None:
        with self._lock:
            created = self._created.get((kind, sid))
            events = list(self._events.get((kind, sid), {}).values())
        return fold(kind, sid, created, events)

    def record_created(self, kind: Kind, sid: str, created: Created) -> None:
        with self._lock:
            self._created[(kind, sid)] = created
            self._written[("delivery", f"{kind}:{sid}")] = clock.now()

    def record_status(self, kind: Kind, sid: str, event: StatusEvent) -> bool:
        with self._lock:
            events = self._events.setdefault((kind, sid), {})
            if event.status in events:
                return False
            events[event.status] = event
            self._written[("delivery", f"{kind}:{sid}")] = clock.now()
            return True

    def record_call_parties(self, call_sid: str, parties: CallParties) -> None:
        with self._lock:
            self._parties[call_sid] = parties
            self._written[("voicemail", call_sid)] = clock.now()

    def record_recording(self, call_sid: str, event: RecordingEvent) -> bool:
        with self._lock:
            events = self._recordings.setdefault(call_sid, {})
            if (event.recording_sid, event.status) in events:
                return False
            events[(event.recording_sid, event.status)] = event
            self._written[("voicemail", call_sid)] = clock.now()
            return True

    def voicemails(self, limit: int) -> list[Voicemail]:
        with self._lock:
            calls = [
                (sid, self._parties.get(sid), list(events.values()))
                for sid, events in self._recordings.items()
            ]
        found = [v for sid, parties, events in calls for v in fold_voicemails(sid, parties, events)]
        return newest_first(found, limit)

    def update_key(
        self,
        scope: str,
        key: str,
        change: Callable[[IdempotencyRecord | None], IdempotencyRecord | None],
    ) -> Versioned:
        with self._lock:
            current = self._keys.get((scope, key))
            updated = change(current)
            if updated is not None:
                self._keys[(scope, key)] = updated
                self._versions[(scope, key)] = self._versions.get((scope, key), 0) + 1
            version = self._versions.get((scope, key))
            return Versioned(updated or current, str(version) if version else None)

    def replace_key(self, scope: str, key: str, record: IdempotencyRecord, version: str) -> bool:
        with self._lock:
            if str(self._versions.get((scope, key))) != version:
                return False
            self._keys[(scope, key)] = record
            self._versions[(scope, key)] += 1
            return True

    def update_counters(
        self,
        counters: Sequence[str],
        change: Callable[[Mapping[str, Shards]], Mapping[tuple[str, int], Slots] | None],
    ) -> None:
        with self._lock:
            current = {
                c: tuple(dict(self._counters.get((c, s), {})) for s in range(COUNTER_SHARDS))
                for c in counters
            }
            for row, slots in (change(current) or {}).items():
                self._counters[row] = dict(slots)
                self._written[("counter", f"{row[0]}-{row[1]}")] = clock.now()

    def add_opt_out(self, number: str, senders: Sequence[str]) -> None:
        with self._opt_out_lock:
            self._opt_outs.update((number, sender) for sender in senders)

    def remove_opt_out(self, number: str, senders: Sequence[str]) -> None:
        with self._opt_out_lock:
            self._opt_outs.difference_update((number, sender) for sender in senders)

    def is_opted_out(self, number: str, sender: str) -> bool:
        with self._opt_out_lock:
            return (number, sender) in self._opt_outs

    def record_sent_message(self, caller: str, message: ConversationMessage) -> None:
        with self._lock:
            self._contacts.setdefault(message.to, {})[caller] = message.at
            view = self._views.setdefault((caller, message.to), {})
            view[conversation_position(message)] = message

    def record_inbound_message(self, message: ConversationMessage) -> bool:
        with self._lock:
            if message.sid in self._inbound:
                return False
            self._inbound[message.sid] = message
            for caller in self._contacts.get(message.from_, {}):
                view = self._views.setdefault((caller, message.from_), {})
                view[conversation_position(message)] = message
            return True

    def conversation(
        self, caller: str, number: str, after: str | None, limit: int
    ) -> ConversationPage:
        with self._lock:
            view = self._views.get((caller, number), {})
            positions = sorted(p for p in view if after is None or p > after)
        page = positions[:limit]
        more = len(positions) > limit
        return ConversationPage([view[p] for p in page], page[-1] if more else None)

    def purge_conversations(self, before: float) -> int:
        with self._lock:
            deleted = 0
            for number, callers in list(self._contacts.items()):
                for caller, last_sent in list(callers.items()):
                    if last_sent < before:
                        del callers[caller]
                        deleted += 1
                if not callers:
                    del self._contacts[number]
            for view in self._views.values():
                old = [p for p, message in view.items() if message.at < before]
                for p in old:
                    del view[p]
                deleted += len(old)
            old_sids = [sid for sid, message in self._inbound.items() if message.at < before]
            for sid in old_sids:
                del self._inbound[sid]
            return deleted + len(old_sids)

    def purge_keys(self, now: float) -> int:
        with self._lock:
            expired = [key for key, record in self._keys.items() if record.expires_at <= now]
            for key in expired:
                del self._keys[key]
            return len(expired)

    def purge_counters(self, idle_since: float) -> int:
        with self._lock:
            idle = [
                (row, f"{row[0]}-{row[1]}")
                for row in self._counters
                if self._written[("counter", f"{row[0]}-{row[1]}")] < idle_since
            ]
            for row, name in idle:
                del self._counters[row], self._written[("counter", name)]
            return len(idle)

    def purge_deliveries(self, unchanged_since: float) -> int:
        with self._lock:
            old = [
                (kind, sid)
                for kind, sid in {*self._created, *self._events}
                if self._written[("delivery", f"{kind}:{sid}")] < unchanged_since
            ]
            for kind, sid in old:
                self._created.pop((kind, sid), None)
                self._events.pop((kind, sid), None)
                del self._written[("delivery", f"{kind}:{sid}")]
            return len(old)

    def purge_voicemails(self, unchanged_since: float) -> int:
        with self._lock:
            old = [
                sid
                for sid in {*self._parties, *self._recordings}
                if self._written[("voicemail", sid)] < unchanged_since
            ]
            for sid in old:
                self._parties.pop(sid, None)
                self._recordings.pop(sid, None)
                del self._written[("voicemail", sid)]
            return len(old)

    def purge_broadcasts(self, unchanged_since: float) -> int:
        with self._lock:
            results = Counter(broadcast_id for broadcast_id, _ in self._results)
            old = {
                broadcast_id
                for broadcast_id, record in self._broadcasts.items()
                if self._written[("broadcast", broadcast_id)] < unchanged_since
                and broadcast_finished(record, results[broadcast_id])
            }
            for parts in (self._chunks, self._results):
                for part in [part for part in parts if part[0] in old]:
                    del parts[part]
            for broadcast_id in old:
                del self._broadcasts[broadcast_id], self._written[("broadcast", broadcast_id)]
            return len(old)

    def create_broadcast(self, record: BroadcastRecord) -> bool:
        with self._lock:
            if record.id in self._broadcasts:
                return False
            self._broadcasts[record.id] = record
            self._written[("broadcast", record.id)] = clock.now()
            return True

    def add_broadcast_chunks(self, broadcast_id: str, chunks: list[list[str]]) -> None:
        with self._lock:
            for index, chunk in enumerate(chunks):
                self._chunks[(broadcast_id, index)] = list(chunk)
            self._written[("broadcast", broadcast_id)] = clock.now()

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
            self._written[("broadcast", broadcast_id)] = clock.now()
            return updated

    def record_recipient_result(
        self, broadcast_id: str, index: int, result: dict[str, Any]
    ) -> None:
        with self._lock:
            self._results[(broadcast_id, index)] = dict(result)
            self._written[("broadcast", broadcast_id)] = clock.now()

    def recipient_results(self, broadcast_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            found = (self._results.get((broadcast_id, i)) for i in range(offset, offset + limit))
            return [dict(result) for result in found if result is not None]
