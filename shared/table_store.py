"""The Store on Azure Table Storage: shared by every instance, safe across processes.

Every read-modify-write is an optimistic transaction on the entity's ETag (insert fails
if the row exists; replace fails if it changed since it was read), retried on conflict,
so concurrent requests from any number of processes never lose an update.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared import clock
from shared.delivery_status import Delivery, Kind, StatusEvent
from shared.settings import StoreIdentity
from shared.store import (
    Attempt,
    BroadcastRecord,
    IdempotencyRecord,
    Slots,
    StoredResponse,
    StoreUnavailable,
)

# azure-core logs every request (URL, headers) at INFO; keys and numbers are in URLs.
logging.getLogger("azure").setLevel(logging.WARNING)

MAX_CONFLICT_RETRIES = 200
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
    """Open for `cooldown` seconds after a failure; then one call at a time may try."""

    def __init__(self, cooldown: float) -> None:
        self._cooldown = cooldown
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
            self._open_until = time.monotonic() + self._cooldown

    def succeeded(self) -> None:
        with self._lock:
            self._open_until = 0.0


class TableStore:
    def __init__(
        self,
        target: str | StoreIdentity,
        prefix: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        cooldown: float = 5.0,
    ) -> None:
        """`target`: a connection string (shared key; Azurite), or an endpoint reached
        with an Entra token (the app's managed identity)."""
        # Fail fast and without retries of our client's own: a request waiting on a
        # dead store only holds a worker thread, and the caller retries anyway. The token
        # request of an identity gets the same bounds; a failed one opens the breaker too.
        limits: dict[str, Any] = {
            "retry_total": 0, "connection_timeout": connect_timeout, "read_timeout": read_timeout,
        }  # fmt: skip
        if isinstance(target, str):
            self._service = TableServiceClient.from_connection_string(target, **limits)
        else:
            self._service = TableServiceClient(
                target.endpoint, credential=identity_credential(target, **limits), **limits
            )
        self._prefix = prefix
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        self.breaker = Breaker(cooldown)

    # Deliveries -------------------------------------------------------------------------

    @_available
    def delivery(self, kind: Kind, sid: str) -> Delivery | None:
        entity = self._get(self._table("Deliveries"), _safe(sid), kind)
        return _delivery(entity) if entity else None

    @_available
    def update_delivery(
        self, kind: Kind, sid: str, change: Callable[[Delivery | None], Delivery | None]
    ) -> Delivery | None:
        table = self._table("Deliveries")
        for _ in range(MAX_CONFLICT_RETRIES):
            entity = self._get(table, _safe(sid), kind)
            current = _delivery(entity) if entity else None
            updated = change(current)
            if updated is None:
                return current
            row = {**_delivery_entity(updated), "updated_at": clock.now()}
            if self._write(table, row, entity):
                return updated
        raise StoreUnavailable()

    # Idempotency keys -------------------------------------------------------------------

    @_available
    def update_key(
        self,
        scope: str,
        key: str,
        change: Callable[[IdempotencyRecord | None], IdempotencyRecord | None],
    ) -> IdempotencyRecord | None:
        table = self._table("Idempotency")
        pk, rk = _digest(scope), _digest(key)
        for _ in range(MAX_CONFLICT_RETRIES):
            entity = self._get(table, pk, rk)
            current = _idempotency_record(entity) if entity else None
            updated = change(current)
            if updated is None:
                return current
            if self._write(table, _idempotency_entity(pk, rk, updated), entity):
                return updated
        raise StoreUnavailable()

    # Rate-limit counters ----------------------------------------------------------------

    @_available
    def update_counter(self, counter: str, change: Callable[[Slots], Slots | None]) -> None:
        table = self._table("Counters")
        pk = _safe(counter)
        for _ in range(MAX_CONFLICT_RETRIES):
            entity = self._get(table, pk, "slots")
            stored = json.loads(entity["slots"]) if entity else {}
            updated = change({int(slot): int(amount) for slot, amount in stored.items()})
            if updated is None:
                return
            row = {
                "PartitionKey": pk, "RowKey": "slots", "slots": json.dumps(updated),
                "updated_at": clock.now(),
            }  # fmt: skip
            if self._write(table, row, entity):
                return
            time.sleep(random.uniform(0, 0.01))  # spread out the losers of a race
        raise StoreUnavailable()

    # Expiry ----------------------------------------------------------------------------
    # A server-side filter on a property scans the table, which a daily job can afford.
    # Rows written before `updated_at` existed have none, match no filter and stay (only
    # local Azurite data can hold such rows: Azure kept no state in tables before it).

    @_available
    def purge_keys(self, now: float) -> int:
        return self._purge("Idempotency", "expires_at le @t", now)

    @_available
    def purge_counters(self, idle_since: float) -> int:
        return self._purge("Counters", "updated_at lt @t", idle_since)

    @_available
    def purge_deliveries(self, unchanged_since: float) -> int:
        return self._purge("Deliveries", "updated_at lt @t", unchanged_since)

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
    def add_opt_out(self, number: str) -> None:
        # Under a digest: the list of people who said STOP is not a list of phone numbers.
        self._table("OptOuts").upsert_entity({"PartitionKey": "optout", "RowKey": _digest(number)})

    @_available
    def is_opted_out(self, number: str) -> bool:
        return self._get(self._table("OptOuts"), "optout", _digest(number)) is not None

    # Broadcasts (PartitionKey: the broadcast id) -----------------------------------------

    @_available
    def create_broadcast(self, record: BroadcastRecord) -> bool:
        entity = {"PartitionKey": record.id, "RowKey": "meta", "record": json.dumps(asdict(record))}
        return self._write(self._table("Broadcasts"), entity, None)

    @_available
    def add_broadcast_chunks(self, broadcast_id: str, chunks: list[list[str]]) -> None:
        table = self._table("Broadcasts")
        rows = [
            {"PartitionKey": broadcast_id, "RowKey": f"chunk-{i:06d}", "to": json.dumps(chunk)}
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
    def _write(table: TableClient, entity: dict[str, Any], read: Any) -> bool:
        """Insert if nothing was read, else replace only if unchanged; False on a lost race."""
        try:
            if read is None:
                table.create_entity(entity)
            else:
                table.update_entity(
                    entity, mode=UpdateMode.REPLACE,
                    etag=read.metadata["etag"], match_condition=MatchConditions.IfNotModified,
                )  # fmt: skip
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except ResourceNotFoundError as exc:
            if read is None or "TableNotFound" in str(exc):
                raise
            return False  # deleted since it was read (expired): read again, then insert
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return False
            raise
        return True


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


def _safe(value: str) -> str:
    return _KEY_UNSAFE.sub("_", value)


def _delivery_entity(delivery: Delivery) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _safe(delivery.sid),
        "RowKey": delivery.kind,
        "sid": delivery.sid,
        "status": delivery.status,
        "history": json.dumps([asdict(event) for event in delivery.history]),
        "error_code": delivery.error_code,
        "duration": delivery.duration,
        "caller": delivery.caller,
        "to": delivery.to,
        "created_at": delivery.created_at,
        "attempt": delivery.attempt,
    }
    return {key: value for key, value in entity.items() if value is not None}


def _delivery(entity: Any) -> Delivery:
    return Delivery(
        kind=entity["RowKey"],
        sid=entity["sid"],
        status=entity["status"],
        history=tuple(StatusEvent(**event) for event in json.loads(entity["history"])),
        error_code=entity.get("error_code"),
        duration=entity.get("duration"),
        caller=entity.get("caller"),
        to=entity.get("to"),
        created_at=entity.get("created_at"),
        attempt=entity.get("attempt"),
    )


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
