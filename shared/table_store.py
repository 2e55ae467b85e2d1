"""The Store on Azure Table Storage: shared by every instance, safe across processes.

Every read-modify-write is an optimistic transaction on the entity's ETag (insert fails
if the row exists; replace fails if it changed since it was read), retried on conflict,
so concurrent requests from any number of processes never lose an update.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import requests
from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import (
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared import clock
from shared.delivery_status import Created as DeliveryCreated
from shared.delivery_status import Delivery, Kind, StatusEvent, fold
from shared.settings import StoreIdentity
from shared.store import (
    COUNTER_SHARDS,
    Attempt,
    BroadcastRecord,
    ConversationMessage,
    ConversationPage,
    IdempotencyRecord,
    Shards,
    Slots,
    StoredResponse,
    StoreUnavailable,
    Versioned,
    broadcast_finished,
    conversation_position,
)
from shared.voicemail import CallParties, RecordingEvent, Voicemail, newest_first
from shared.voicemail import fold as fold_voicemails

# azure-core logs every request (URL, headers) at INFO; keys and numbers are in URLs.
logging.getLogger("azure").setLevel(logging.WARNING)

MAX_CONFLICT_RETRIES = 200
COUNTERS_PARTITION = "limits"
_KEY_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f]")


def _available[**P, T](method: Callable[P, T]) -> Callable[P, T]:
    """Storage errors become StoreUnavailable (callers fail closed, never unlimited); a
    table that vanished (deleted, or an emulator restarted empty) is created again. After
    the store failed to answer, calls fail at once for the store's cool-down: a hung
    store must not hold every worker thread for a timeout each."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        assert isinstance(store, TableStore)
        store.breaker.before_call()
        for attempt in (1, 2):
            try:
                result = method(*args, **kwargs)
            except ResourceNotFoundError as exc:
                if "TableNotFound" not in str(exc) or attempt == 2:
                    raise
                store.forget_tables()
                continue
            except (ResourceExistsError, ResourceModifiedError):
                raise
            except HttpResponseError as exc:
                if exc.status_code is not None and exc.status_code < 500 and exc.status_code != 408:
                    raise
                store.breaker.failed()
                raise StoreUnavailable() from exc
            except AzureError as exc:  # timeouts and connection failures
                store.breaker.failed()
                raise StoreUnavailable() from exc
            store.breaker.succeeded()
            return result
        raise AssertionError("unreachable")

    return wrapper


class Breaker:
    """Open for `cooldown` seconds after `threshold` failures in a row (a store that hangs
    fails every call; one that is merely slow under load succeeds in between, and a slow
    answer must not turn every other request into a 503); then one call at a time may try."""

    def __init__(self, cooldown: float, threshold: int = 3) -> None:
        self._cooldown = cooldown
        self._threshold = threshold
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    def before_call(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._open_until:
                raise StoreUnavailable()
            if self._open_until:  # half open: this call probes, the others wait it out
                self._open_until = now + self._cooldown

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self._threshold:
                self._open_until = time.monotonic() + self._cooldown

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = 0.0


class TableStore:
    remote = True

    def __init__(
        self,
        target: str | StoreIdentity,
        prefix: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        cooldown: float = 5.0,
        connections: int = 10,
    ) -> None:
        """`target`: a connection string (shared key; Azurite), or an endpoint reached
        with an Entra token (the app's managed identity). `connections`: as many as
        threads may use the store at once (the worker's and shared/parallel.py's)."""
        # Fail fast and without retries of our client's own: a request waiting on a
        # dead store only holds a worker thread, and the caller retries anyway. The token
        # request of an identity gets the same bounds; a failed one opens the breaker too.
        limits: dict[str, Any] = {
            "retry_total": 0, "connection_timeout": connect_timeout, "read_timeout": read_timeout,
        }  # fmt: skip
        # One pool for every table, kept open: requests' default keeps 10 connections, and
        # each thread beyond that opened (on Azure: a TLS handshake) and dropped its own.
        session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=connections,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )  # fmt: skip
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # A transport made here takes the timeouts itself: the client's own keywords
        # only reach a transport the client makes (else requests wait 300 s).
        transport = RequestsTransport(
            session=session, session_owner=False,
            connection_timeout=connect_timeout, read_timeout=read_timeout,
        )  # fmt: skip
        if isinstance(target, str):
            self._service = TableServiceClient.from_connection_string(
                target, transport=transport, **limits
            )
        else:
            self._service = TableServiceClient(
                target.endpoint, credential=identity_credential(target, **limits),
                transport=transport, **limits,
            )  # fmt: skip
        self._prefix = prefix
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        self.breaker = Breaker(cooldown)

    # Deliveries (PartitionKey: the SID; a row for the create, one per status) ----------

    @_available
    def delivery(self, kind: Kind, sid: str) -> Delivery | None:
        rows = self._table("Deliveries").query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": _safe(sid), "low": kind, "high": f"{kind}\x7f"},
        )
        created: DeliveryCreated | None = None
        events: list[StatusEvent] = []
        # In the order they arrived: `at` (shown, in milliseconds) ties too often.
        for row in sorted(rows, key=lambda row: row.get("updated_at", 0.0)):
            if "history" in row:  # one row per delivery, before issue 14 (local data only)
                created, legacy_events = _legacy_delivery(row)
                events.extend(legacy_events)
            elif row["RowKey"] == kind:
                created = DeliveryCreated(
                    caller=row["caller"], to=row["to"], status=row["status"], at=row["at"],
                    attempt=row.get("attempt"),
                )  # fmt: skip
            else:
                events.append(
                    StatusEvent(
                        status=row["status"], at=row["at"],
                        error_code=row.get("error_code"), duration=row.get("duration"),
                    )
                )  # fmt: skip
        return fold(kind, sid, created, events)

    @_available
    def record_created(self, kind: Kind, sid: str, created: DeliveryCreated) -> None:
        row = {"PartitionKey": _safe(sid), "RowKey": kind, **asdict(created)}
        row = {k: v for k, v in row.items() if v is not None}
        self._table("Deliveries").upsert_entity({**row, "updated_at": clock.now()})

    @_available
    def record_status(self, kind: Kind, sid: str, event: StatusEvent) -> bool:
        # One row per status, inserted only if absent: a duplicate callback is a refused
        # insert, and the rows are read back in the order they arrived (delivery_status.fold).
        row = {"PartitionKey": _safe(sid), "RowKey": f"{kind}~{event.status}", **asdict(event)}
        row = {k: v for k, v in row.items() if v is not None}
        return self._write(self._table("Deliveries"), {**row, "updated_at": clock.now()}, None)

    # Voicemails (PartitionKey: the CallSid, validated as Twilio spells it; a row for who
    # called, one per recording status) --------------------------------------------------

    @_available
    def record_call_parties(self, call_sid: str, parties: CallParties) -> None:
        row = {"PartitionKey": _safe(call_sid), "RowKey": "parties", **asdict(parties)}
        self._table("Voicemails").upsert_entity({**row, "updated_at": clock.now()})

    @_available
    def record_recording(self, call_sid: str, event: RecordingEvent) -> bool:
        # Inserted only if absent: a duplicate delivery is a refused insert.
        row = {
            "PartitionKey": _safe(call_sid),
            "RowKey": f"recording~{_safe(event.recording_sid)}~{event.status}",
            **asdict(event),
        }
        row = {k: v for k, v in row.items() if v is not None}
        return self._write(self._table("Voicemails"), {**row, "updated_at": clock.now()}, None)

    @_available
    def voicemails(self, limit: int) -> list[Voicemail]:
        parties: dict[str, CallParties] = {}
        events: dict[str, list[RecordingEvent]] = {}
        for row in self._table("Voicemails").list_entities():
            call_sid = row["PartitionKey"]
            if row["RowKey"] == "parties":
                parties[call_sid] = CallParties(
                    from_number=row["from_number"], to_number=row["to_number"], at=row["at"]
                )
            elif row["RowKey"].startswith("recording~"):
                events.setdefault(call_sid, []).append(
                    RecordingEvent(
                        recording_sid=row["recording_sid"], status=row["status"], at=row["at"],
                        url=row.get("url"), duration=row.get("duration"),
                        error_code=row.get("error_code"),
                    )
                )  # fmt: skip
        found = [
            v
            for sid, recorded in events.items()
            for v in fold_voicemails(sid, parties.get(sid), recorded)
        ]
        return newest_first(found, limit)

    # Idempotency keys -------------------------------------------------------------------

    @_available
    def update_key(
        self,
        scope: str,
        key: str,
        change: Callable[[IdempotencyRecord | None], IdempotencyRecord | None],
    ) -> Versioned:
        table = self._table("Idempotency")
        pk, rk = _digest(scope), _digest(key)
        fresh = change(None)
        if fresh is not None:  # a claim: try the insert first, one request when it is new
            written = self._insert(table, _idempotency_entity(pk, rk, fresh))
            if written is not None:
                return Versioned(fresh, written)
        for _ in range(MAX_CONFLICT_RETRIES):
            entity = self._get(table, pk, rk)
            current = _idempotency_record(entity) if entity else None
            updated = change(current)
            if updated is None:
                return Versioned(current, entity.metadata["etag"] if entity else None)
            version = self._write_versioned(table, _idempotency_entity(pk, rk, updated), entity)
            if version is not None:
                return Versioned(updated, version)
        raise StoreUnavailable()

    @_available
    def replace_key(self, scope: str, key: str, record: IdempotencyRecord, version: str) -> bool:
        entity = _idempotency_entity(_digest(scope), _digest(key), record)
        try:
            self._table("Idempotency").update_entity(
                entity, mode=UpdateMode.REPLACE,
                etag=version, match_condition=MatchConditions.IfNotModified,
            )  # fmt: skip
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return False
            raise
        return True

    # Rate-limit counters (one partition, so that every counter a request charges is
    # written in one transaction: all or none) -------------------------------------------

    @_available
    def update_counters(
        self,
        counters: Sequence[str],
        change: Callable[[Mapping[str, Shards]], Mapping[tuple[str, int], Slots] | None],
    ) -> None:
        table = self._table("Counters")
        names = {_safe(counter): counter for counter in counters}
        # One RowKey range per counter ("name-00" … "name-15"; "." sorts right after "-"):
        # Table Storage allows at most 15 comparisons in a filter, so rows are not listed.
        if 1 + 2 * len(names) > 15:
            raise ValueError("at most 7 counters are read in one query")
        ranges = " or ".join(f"( RowKey ge @a{i} and RowKey lt @b{i} )" for i in range(len(names)))
        parameters = {"pk": COUNTERS_PARTITION}
        for i, name in enumerate(names):
            parameters.update({f"a{i}": f"{name}-", f"b{i}": f"{name}."})
        for _ in range(MAX_CONFLICT_RETRIES):
            found: dict[tuple[str, int], Any] = {}
            # The SDK substitutes @names between spaces only: "( … )", not "(…)".
            for stored in table.query_entities(
                f"PartitionKey eq @pk and ( {ranges} )", parameters=parameters
            ):
                name, _, shard = stored["RowKey"].rpartition("-")
                if name in names and len(shard) == 2 and shard.isdigit():
                    found[(names[name], int(shard))] = stored
            current = {
                counter: tuple(
                    _slots(found[(counter, shard)]) if (counter, shard) in found else {}
                    for shard in range(COUNTER_SHARDS)
                )
                for counter in counters
            }
            updates = change(current)
            if not updates:
                return
            operations: list[Any] = []
            for (counter, shard), slots in updates.items():
                row = {
                    "PartitionKey": COUNTERS_PARTITION, "RowKey": f"{_safe(counter)}-{shard:02d}",
                    "slots": json.dumps(slots), "updated_at": clock.now(),
                }  # fmt: skip
                read = found.get((counter, shard))
                if read is not None:
                    operations.append(("update", row, {
                        "mode": UpdateMode.REPLACE, "etag": read.metadata["etag"],
                        "match_condition": MatchConditions.IfNotModified,
                    }))  # fmt: skip
                else:
                    operations.append(("create", row))
            try:
                table.submit_transaction(operations)
                return
            except TableTransactionError as exc:
                # 404: a row was deleted (expired) since it was read; read again.
                lost_race = exc.status_code in (409, 412) or (
                    exc.status_code == 404 and "TableNotFound" not in str(exc)
                )
                if not lost_race:
                    raise
            time.sleep(random.uniform(0, 0.01))  # spread out the losers of a race
        raise StoreUnavailable()

    # Expiry ----------------------------------------------------------------------------
    # A server-side filter on a property scans the table, which a daily job can afford.
    # Rows written before `updated_at` existed have none, match no filter and stay: only
    # local Azurite data can hold such rows, except broadcasts, whose rows got it later
    # (in Azure too): a broadcast written before stays until deleted by hand.

    @_available
    def purge_keys(self, now: float) -> int:
        return self._purge("Idempotency", "expires_at le @t", now)

    @_available
    def purge_counters(self, idle_since: float) -> int:
        return self._purge("Counters", "updated_at lt @t", idle_since)

    @_available
    def purge_deliveries(self, unchanged_since: float) -> int:
        # A delivery is its SID's partition (the create's row, one per status): it goes
        # whole, once no row of it changed since, or a late callback would outlive its owner.
        return self._purge_partitions("Deliveries", unchanged_since)

    @_available
    def purge_voicemails(self, unchanged_since: float) -> int:
        # A call's partition (who called, its recordings' statuses) goes whole, like a
        # delivery: a late recording callback keeps who called beside it.
        return self._purge_partitions("Voicemails", unchanged_since)

    @_available
    def purge_broadcasts(self, unchanged_since: float) -> int:
        # A broadcast is its id's partition (the record, its chunks, a result per
        # recipient): it goes whole, once finished and no row of it changed since. Found by
        # its record, which goes last: a purge cut short leaves the record to find the
        # rest by again, never recipients that nothing finds.
        return self._purge_partitions(
            "Broadcasts", unchanged_since, candidates="RowKey eq 'meta' and updated_at lt @t",
            finished=_broadcast_finished, last="meta",
        )  # fmt: skip

    def _purge_partitions(
        self,
        table_name: str,
        unchanged_since: float,
        *,
        candidates: str = "updated_at lt @t",
        finished: Callable[[list[Any]], bool] = lambda rows: True,
        last: str | None = None,
    ) -> int:
        """Delete each partition that `candidates` (a filter on @t) names, `finished` says
        is done with, and none of whose rows changed since `unchanged_since` (a row without
        `updated_at` cannot be shown old, so it keeps its partition); how many were deleted.
        A transaction takes 100 rows: a partition up to that size goes in one, a larger one
        in several, the row keyed `last` in the last."""
        table = self._table(table_name)
        old = table.query_entities(
            candidates, parameters={"t": float(unchanged_since)}, select=["PartitionKey"]
        )
        deleted = 0
        for pk in dict.fromkeys(entity["PartitionKey"] for entity in old):
            rows = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": pk}))
            if not rows or any(
                row.get("updated_at", unchanged_since) >= unchanged_since for row in rows
            ):
                continue  # gone meanwhile, or in use since
            rows.sort(key=lambda row: row["RowKey"] == last)  # stable: the rest keep their order
            # A purge cut short (a row changed meanwhile, a crash) may have deleted what
            # showed the partition done (a broadcast's results): the mark on its last row
            # says so instead, and the next run goes on once the partition is old again.
            if not rows[-1].get("purging"):
                if not finished(rows):
                    continue
                if len(rows) > 100:
                    marked = self._mark_purging(table, rows[-1])
                    if marked is None:
                        continue
                    rows[-1] = marked
            batches = [rows[i : i + 100] for i in range(0, len(rows), 100)]
            # all() stops at the first refusal: what is left waits for the next run.
            if all(self._delete_as_read(table, batch) for batch in batches):
                deleted += 1
        return deleted

    @classmethod
    def _mark_purging(cls, table: TableClient, row: Any) -> Any:
        """Mark `row` (as read) purging, keeping its `updated_at`; the row as it is now, or
        None when it changed meanwhile."""
        marked = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "purging": True}
        try:
            table.update_entity(
                marked, mode=UpdateMode.MERGE,
                etag=row.metadata["etag"], match_condition=MatchConditions.IfNotModified,
            )  # fmt: skip
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        except HttpResponseError as exc:
            if exc.status_code in (404, 412):
                return None
            raise
        return cls._get(table, row["PartitionKey"], row["RowKey"])

    @staticmethod
    def _delete_as_read(table: TableClient, rows: list[Any]) -> bool:
        """Delete `rows` (one partition's) in one transaction, only as they were read: a
        callback or result landing meanwhile keeps them all (False)."""
        try:
            table.submit_transaction([
                ("delete", row, {
                    "etag": row.metadata["etag"],
                    "match_condition": MatchConditions.IfNotModified,
                })
                for row in rows
            ])  # fmt: skip
        except TableTransactionError as exc:
            if exc.status_code not in (404, 409, 412):
                raise
            return False
        return True

    def _purge(self, table_name: str, condition: str, moment: float) -> int:
        table = self._table(table_name)
        found = table.query_entities(
            condition, parameters={"t": float(moment)}, select=["PartitionKey", "RowKey"]
        )
        deleted = 0
        for entity in found:
            try:  # only as read: a row rewritten meanwhile is in use again
                table.delete_entity(
                    entity["PartitionKey"], entity["RowKey"],
                    etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified,
                )  # fmt: skip
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
            deleted += 1
        return deleted

    # Opt-outs ---------------------------------------------------------------------------

    @_available
    def add_opt_out(self, number: str, senders: Sequence[str]) -> None:
        # Under a digest: the list of people who said STOP is not a list of phone numbers.
        # One partition, so a recipient's rows for several senders go in one transaction.
        rows = [{"PartitionKey": "optout", "RowKey": _opt_out_key(number, s)} for s in senders]
        self._table("OptOuts").submit_transaction([("upsert", row) for row in rows])

    @_available
    def remove_opt_out(self, number: str, senders: Sequence[str]) -> None:
        table = self._table("OptOuts")
        for sender in senders:  # one by one: a missing row would fail a whole transaction
            table.delete_entity("optout", _opt_out_key(number, sender))

    @_available
    def is_opted_out(self, number: str, sender: str) -> bool:
        return self._get(self._table("OptOuts"), "optout", _opt_out_key(number, sender)) is not None

    # Conversations (PartitionKey: the number's digest) -----------------------------------
    # Rows: `c|<caller>` says the caller sent to the number (and when, last); `s|<SID>` is
    # an inbound message, stored once; `m|<caller>|<position>` is a message in that
    # caller's view, newest first (conversation_position). An inbound message is copied
    # into the view of each caller that had sent to its number: a page is one range query.

    # A send writes its two rows as two single-entity upserts, side by side (the caller
    # runs them in parallel): a $batch costs several times one upsert, on SendSms's path.
    @_available
    def record_sent_message(self, caller: str, message: ConversationMessage) -> None:
        pk, who = _digest(message.to), _digest(caller)
        view = _message_entity(pk, f"m|{who}|{conversation_position(message)}", message)
        contact = {"PartitionKey": pk, "RowKey": f"c|{who}", "at": message.at}
        # Both rows live in the recipient's partition: one transaction, one round trip.
        self._table("Conversations").submit_transaction([("upsert", view), ("upsert", contact)])

    @_available
    def record_inbound_message(self, message: ConversationMessage) -> bool:
        table, pk = self._table("Conversations"), _digest(message.from_)
        contacts = table.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": pk, "low": "c|", "high": "c}"}, select=["RowKey"],
        )  # fmt: skip
        position = conversation_position(message)
        views = [
            ("upsert", _message_entity(pk, f"m|{row['RowKey'][2:]}|{position}", message))
            for row in contacts
        ]
        # The SID's row is inserted in the same transaction as the first views: a repeat
        # delivery fails it whole and changes nothing. A transaction takes 100 rows.
        stored = ("create", _message_entity(pk, f"s|{_safe(message.sid)}", message))
        try:
            table.submit_transaction([stored, *views[:99]])
        except TableTransactionError as exc:
            if exc.status_code == 409:
                return False
            raise
        for start in range(99, len(views), 100):
            table.submit_transaction(views[start : start + 100])
        return True

    @_available
    def conversation(
        self, caller: str, number: str, after: str | None, limit: int
    ) -> ConversationPage:
        prefix = f"m|{_digest(caller)}|"
        bounds = {"low": prefix + (after or ""), "high": prefix[:-1] + "}"}
        rows = self._table("Conversations").query_entities(
            "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high",
            parameters={"pk": _digest(number), **bounds}, results_per_page=limit + 1,
        )  # fmt: skip
        found = list(itertools.islice(rows, limit + 1))
        page = found[:limit]
        more = len(found) > limit
        after_page = str(page[-1]["RowKey"]).removeprefix(prefix) if more else None
        return ConversationPage([_conversation_message(row) for row in page], after_page)

    @_available
    def purge_conversations(self, before: float) -> int:
        return self._purge("Conversations", "at lt @t", before)

    # Broadcasts (PartitionKey: the broadcast id) -----------------------------------------

    @_available
    def create_broadcast(self, record: BroadcastRecord) -> bool:
        entity = {
            "PartitionKey": record.id, "RowKey": "meta", "record": json.dumps(asdict(record)),
            "updated_at": clock.now(),
        }  # fmt: skip
        return self._write(self._table("Broadcasts"), entity, None)

    @_available
    def add_broadcast_chunks(self, broadcast_id: str, chunks: list[list[str]]) -> None:
        table = self._table("Broadcasts")
        rows = [
            {
                "PartitionKey": broadcast_id,
                "RowKey": f"chunk-{i:06d}",
                "to": json.dumps(chunk),
                "updated_at": clock.now(),
            }
            for i, chunk in enumerate(chunks)
        ]
        for start in range(0, len(rows), 100):  # a transaction holds at most 100 entities
            table.submit_transaction([("upsert", row) for row in rows[start : start + 100]])

    @_available
    def forget_broadcast(self, broadcast_id: str) -> None:
        self._table("Broadcasts").delete_entity(broadcast_id, "meta")

    @_available
    def broadcast(self, broadcast_id: str) -> BroadcastRecord | None:
        entity = self._get(self._table("Broadcasts"), _safe(broadcast_id), "meta")
        return BroadcastRecord(**json.loads(entity["record"])) if entity else None

    @_available
    def broadcast_chunk(self, broadcast_id: str, chunk: int) -> list[str]:
        entity = self._get(self._table("Broadcasts"), broadcast_id, f"chunk-{chunk:06d}")
        return list(json.loads(entity["to"])) if entity else []

    @_available
    def update_broadcast(
        self, broadcast_id: str, change: Callable[[BroadcastRecord], BroadcastRecord]
    ) -> BroadcastRecord | None:
        table = self._table("Broadcasts")
        for _ in range(MAX_CONFLICT_RETRIES):
            entity = self._get(table, _safe(broadcast_id), "meta")
            if entity is None:
                return None
            updated = change(BroadcastRecord(**json.loads(entity["record"])))
            row = {
                "PartitionKey": broadcast_id,
                "RowKey": "meta",
                "record": json.dumps(asdict(updated)),
                "updated_at": clock.now(),
            }
            if self._write(table, row, entity):
                return updated
        raise StoreUnavailable()

    @_available
    def record_recipient_result(
        self, broadcast_id: str, index: int, result: dict[str, Any]
    ) -> None:
        self._table("Broadcasts").upsert_entity(
            {
                "PartitionKey": broadcast_id,
                "RowKey": f"result-{index:06d}",
                "result": json.dumps(result),
                "updated_at": clock.now(),
            }
        )

    @_available
    def recipient_results(self, broadcast_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        entities = self._table("Broadcasts").query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={
                "pk": broadcast_id,
                "low": f"result-{offset:06d}",
                "high": f"result-{offset + limit:06d}",
            },
        )
        return [json.loads(entity["result"]) for entity in entities]

    # Internals --------------------------------------------------------------------------

    def forget_tables(self) -> None:
        with self._lock:
            self._tables.clear()

    def _table(self, name: str) -> TableClient:
        with self._lock:
            if name not in self._tables:
                self._tables[name] = self._service.create_table_if_not_exists(self._prefix + name)
            return self._tables[name]

    @staticmethod
    def _get(table: TableClient, pk: str, rk: str) -> Any:
        try:
            return table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _insert(table: TableClient, entity: dict[str, Any]) -> str | None:
        """Insert unless the row exists: the new row's ETag, or None when it existed."""
        try:
            answer = table.create_entity(entity)
        except ResourceExistsError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return None
            raise
        return str(answer["etag"])

    @staticmethod
    def _write_versioned(table: TableClient, entity: dict[str, Any], read: Any) -> str | None:
        """Insert if nothing was read, else replace only if unchanged: the written row's
        ETag, or None on a lost race (a row deleted since it was read, as on expiry, is a
        lost race too: read again, then insert)."""
        try:
            if read is None:
                answer = table.create_entity(entity)
            else:
                answer = table.update_entity(
                    entity, mode=UpdateMode.REPLACE,
                    etag=read.metadata["etag"], match_condition=MatchConditions.IfNotModified,
                )  # fmt: skip
        except (ResourceExistsError, ResourceModifiedError):
            return None
        except ResourceNotFoundError as exc:
            if read is None or "TableNotFound" in str(exc):
                raise
            return None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return None
            raise
        return str(answer["etag"])

    @classmethod
    def _write(cls, table: TableClient, entity: dict[str, Any], read: Any) -> bool:
        return cls._write_versioned(table, entity, read) is not None


def identity_credential(identity: StoreIdentity, **limits: Any) -> TokenCredential:
    """The app's managed identity (a user-assigned one when a client ID is given), as the
    host uses for `AzureWebJobsStorage__credential=managedidentity`; without that setting,
    DefaultAzureCredential, which is the managed identity on Azure and a developer's
    sign-in elsewhere. azure-identity loads here only: not on the TwiML path, not for a
    connection string."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if identity.managed_identity:
        return ManagedIdentityCredential(client_id=identity.client_id, **limits)
    return DefaultAzureCredential(**limits)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _opt_out_key(number: str, sender: str) -> str:
    return _digest(f"{sender}|{number}")


def _message_entity(pk: str, rk: str, message: ConversationMessage) -> dict[str, Any]:
    entity = {
        "PartitionKey": pk, "RowKey": rk, "sid": message.sid, "direction": message.direction,
        "sender": message.from_, "to": message.to, "body": message.body, "at": message.at,
        "media": json.dumps(message.media), "service": message.messaging_service_sid,
    }  # fmt: skip
    return {k: v for k, v in entity.items() if v is not None}


def _conversation_message(entity: Any) -> ConversationMessage:
    return ConversationMessage(
        sid=entity["sid"], direction=entity["direction"], from_=entity["sender"],
        to=entity["to"], body=entity["body"], at=float(entity["at"]),
        media=tuple((url, kind) for url, kind in json.loads(entity["media"])),
        messaging_service_sid=entity.get("service"),
    )  # fmt: skip


def _safe(value: str) -> str:
    return _KEY_UNSAFE.sub("_", value)


def _legacy_delivery(entity: Any) -> tuple[DeliveryCreated | None, list[StatusEvent]]:
    """A delivery as one row, rewritten per callback, held it before issue 14."""
    history = [StatusEvent(**event) for event in json.loads(entity["history"])]
    if entity.get("caller") is None or not history:
        return None, history
    created = DeliveryCreated(
        caller=entity["caller"], to=entity.get("to") or "", status=history[0].status,
        at=entity.get("created_at") or history[0].at, attempt=entity.get("attempt"),
    )  # fmt: skip
    return created, history[1:]


def _broadcast_finished(rows: list[Any]) -> bool:
    """A broadcast partition's rows: whether it is finished (store.broadcast_finished)."""
    meta = next((row for row in rows if row["RowKey"] == "meta"), None)
    if meta is None:
        return False
    results = sum(1 for row in rows if str(row["RowKey"]).startswith("result-"))
    return broadcast_finished(BroadcastRecord(**json.loads(meta["record"])), results)


def _slots(entity: Any) -> Slots:
    return {int(slot): int(n) for slot, n in json.loads(entity["slots"]).items()}


def _idempotency_entity(pk: str, rk: str, record: IdempotencyRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": pk,
        "RowKey": rk,
        "fingerprint": record.fingerprint,
        "expires_at": record.expires_at,
        "lease_until": record.lease_until,
        "unknown": record.unknown,
    }
    if record.response is not None:
        entity["response"] = json.dumps(asdict(record.response))
    if record.attempt is not None:
        entity["attempt"] = json.dumps(asdict(record.attempt))
    return entity


def _idempotency_record(entity: Any) -> IdempotencyRecord:
    stored = None
    if entity.get("response"):
        data = json.loads(entity["response"])
        stored = StoredResponse(
            status_code=data["status_code"],
            body=data["body"],
            content_type=data["content_type"],
            headers=tuple(tuple(pair) for pair in data["headers"]),
        )
    attempt = Attempt(**json.loads(entity["attempt"])) if entity.get("attempt") else None
    return IdempotencyRecord(
        fingerprint=entity["fingerprint"],
        expires_at=float(entity["expires_at"]),
        lease_until=float(entity["lease_until"]),
        response=stored,
        attempt=attempt,
        unknown=bool(entity.get("unknown", False)),
    )
