"""The stand-in's instances in Azure Table Storage (Azurite locally), so that a host
killed mid-broadcast resumes every unfinished instance when it starts again.

One table, one partition per instance: the status row (RowKey `instance`), history rows
`h-<execution id>-<index>` (the status row's HistoryLength says how many count, so rows
written by an episode that never committed are ignored), and inbox rows `m-<key>`.
An episode commits in one entity-group transaction of its partition where it fits
(100 operations): status row, consumed messages deleted, new timer messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import (
    TableClient,
    TableEntity,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from devhost.durable.instances import RUNNING, Instance, Message, Parent
from devhost.durable.store import purged_by

logger = logging.getLogger(__name__)
# azure-core logs every request at INFO; keep the host's log readable.
logging.getLogger("azure").setLevel(logging.WARNING)

STATUS_ROW = "instance"
BATCH = 100  # operations per entity-group transaction
PIECE = 30_000  # characters per string property (the limit is 64 KiB of UTF-16)
Entity = dict[str, Any]


class TableDurableStore:
    def __init__(self, connection_string: str, table_name: str) -> None:
        service = TableServiceClient.from_connection_string(
            connection_string, connection_timeout=5, read_timeout=20, retry_total=2
        )
        self._table: TableClient = service.create_table_if_not_exists(table_name)
        self.name = f"Azure Table Storage, table {table_name}"

    def create(self, instance: Instance, start: Message) -> bool:
        pk = instance.instance_id
        try:
            existing: TableEntity | None = self._table.get_entity(pk, STATUS_ROW)
        except ResourceNotFoundError:
            existing = None
        if existing is not None and existing["Status"] in RUNNING:
            return False
        row = _status_row(instance, 0)
        # Replace a finished instance only if nobody replaced it first (its ETag).
        write: tuple[Any, ...] = ("create", row)
        if existing is not None:
            condition = {
                "etag": existing.metadata["etag"],
                "match_condition": MatchConditions.IfNotModified,
            }
            write = ("update", row, {"mode": UpdateMode.REPLACE, **condition})
        try:
            self._table.submit_transaction([write, ("upsert", _message_row(start))])
        except (TableTransactionError, ResourceExistsError, ResourceModifiedError):
            return False  # another start won the race
        return True

    def load(self, instance_id: str) -> Instance | None:
        try:
            row = self._table.get_entity(instance_id, STATUS_ROW)
        except ResourceNotFoundError:
            return None
        instance = _instance(row)
        length = int(row["HistoryLength"])
        prefix = f"h-{instance.execution_id}-"
        rows = sorted(self._rows(instance_id, prefix), key=lambda r: str(r["RowKey"]))
        instance.history = [json.loads(_joined(r, "Event")) for r in rows[:length]]
        if len(instance.history) != length:
            raise RuntimeError(f"history of {instance_id} is incomplete in storage")
        return instance

    def add_messages(self, messages: list[Message]) -> None:
        for message in messages:
            self._table.upsert_entity(_message_row(message), mode=UpdateMode.REPLACE)

    def messages(self, instance_id: str) -> list[Message]:
        return [_message(row) for row in self._rows(instance_id, "m-")]

    def commit(
        self,
        instance: Instance,
        stored_events: int,
        consumed: list[str],
        new_messages: list[Message],
    ) -> None:
        pk = instance.instance_id
        rows = [
            _history_row(pk, instance.execution_id, index, event)
            for index, event in enumerate(instance.history)
            if index >= stored_events
        ]
        for start in range(0, len(rows), BATCH):
            self._table.submit_transaction(
                [("upsert", r, {"mode": UpdateMode.REPLACE}) for r in rows[start : start + BATCH]]
            )
        mine = [m for m in new_messages if m.instance_id == pk]
        operations: list[tuple[Any, ...]] = [
            ("upsert", _status_row(instance, len(instance.history)), {"mode": UpdateMode.REPLACE}),
            *(("upsert", _message_row(m), {"mode": UpdateMode.REPLACE}) for m in mine),
            *(("delete", {"PartitionKey": pk, "RowKey": f"m-{key}"}) for key in consumed),
        ]
        try:
            for start in range(0, len(operations), BATCH):
                self._table.submit_transaction(operations[start : start + BATCH])
        except TableTransactionError:
            # A message to delete is already gone: commit the rest one by one.
            logger.warning("Commit of %s retried operation by operation", pk)
            for operation in operations:
                self._one(operation)
        self.add_messages([m for m in new_messages if m.instance_id != pk])

    def unfinished(self) -> list[str]:
        ids = {
            str(row["PartitionKey"])
            for row in self._table.query_entities(
                f"RowKey eq '{STATUS_ROW}'", select=["PartitionKey", "Status"]
            )
            if row["Status"] in RUNNING
        }
        ids |= {
            str(row["PartitionKey"])
            for row in self._table.query_entities(
                "RowKey ge 'm-' and RowKey lt 'm.'", select=["PartitionKey"]
            )
        }
        return sorted(ids)

    def named(self, name: str) -> list[tuple[str, datetime]]:
        rows = self._table.query_entities(
            "RowKey eq @row and Name eq @name",
            parameters={"row": STATUS_ROW, "name": name},
            select=["PartitionKey", "Created"],
        )
        return [(str(row["PartitionKey"]), datetime.fromisoformat(row["Created"])) for row in rows]

    def purge(
        self, created_from: datetime, created_to: datetime, statuses: frozenset[str] | None
    ) -> int:
        status_rows = self._table.query_entities(
            f"RowKey eq '{STATUS_ROW}'", select=["PartitionKey", "Created", "Status"]
        )
        doomed = [
            str(row["PartitionKey"])
            for row in status_rows
            if purged_by(
                datetime.fromisoformat(row["Created"]), row["Status"], created_from,
                created_to, statuses,
            )
        ]  # fmt: skip
        for instance_id in doomed:
            self._delete_partition(instance_id)
        return len(doomed)

    def _delete_partition(self, partition: str) -> None:
        # The status row goes last: a purge cut short leaves it, and the next purge that
        # matches it finds the partition again and deletes the rest.
        keys = [
            str(row["RowKey"])
            for row in self._table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": partition}, select=["RowKey"]
            )
        ]
        deletes = [("delete", {"PartitionKey": partition, "RowKey": k}) for k in keys]
        rest = [d for d in deletes if d[1]["RowKey"] != STATUS_ROW]
        for start in range(0, len(rest), BATCH):
            self._table.submit_transaction(rest[start : start + BATCH])
        self._one(("delete", {"PartitionKey": partition, "RowKey": STATUS_ROW}))

    def _rows(self, partition: str, prefix: str) -> Iterator[Entity]:
        # Row keys sort as strings: every key that starts with `prefix` lies in [prefix, prefix.)
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        parameters = {"pk": partition, "low": prefix, "high": upper}
        yield from self._table.query_entities(query, parameters=parameters)

    def _one(self, operation: tuple[Any, ...]) -> None:
        kind, entity = operation[0], operation[1]
        try:
            if kind == "delete":
                self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
            else:
                self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if kind != "delete":
                raise
            logger.debug("already deleted: %s", exc)


# Rows ---------------------------------------------------------------------------------


def _status_row(instance: Instance, history_length: int) -> Entity:
    row: Entity = {
        "PartitionKey": instance.instance_id,
        "RowKey": STATUS_ROW,
        "Name": instance.name,
        "ExecutionId": instance.execution_id,
        "Status": instance.status,
        "Created": instance.created.isoformat(),
        "Updated": instance.updated.isoformat(),
        "Parent": json.dumps(asdict(instance.parent)) if instance.parent else "",
        "HistoryLength": history_length,
    }
    for name, value in (
        ("Input", instance.input),
        ("Output", instance.output),
        ("CustomStatus", instance.custom_status),
    ):
        row |= _pieces(name, json.dumps(value))
    return row


def _instance(row: Entity) -> Instance:
    parent = json.loads(row["Parent"]) if row.get("Parent") else None
    return Instance(
        instance_id=str(row["PartitionKey"]),
        name=row["Name"],
        execution_id=row["ExecutionId"],
        created=datetime.fromisoformat(row["Created"]),
        updated=datetime.fromisoformat(row["Updated"]),
        status=row["Status"],
        input=json.loads(_joined(row, "Input")),
        output=json.loads(_joined(row, "Output")),
        custom_status=json.loads(_joined(row, "CustomStatus")),
        parent=Parent(**parent) if parent else None,
    )


def _history_row(partition: str, execution_id: str, index: int, event: dict[str, Any]) -> Entity:
    row: Entity = {"PartitionKey": partition, "RowKey": f"h-{execution_id}-{index:08d}"}
    return row | _pieces("Event", json.dumps(event))


def _message_row(message: Message) -> Entity:
    row: Entity = {
        "PartitionKey": message.instance_id,
        "RowKey": f"m-{message.key}",
        "ExecutionId": message.execution_id or "",
        "Due": message.due.isoformat() if message.due else "",
    }
    return row | _pieces("Event", json.dumps(message.event))


def _message(row: Entity) -> Message:
    return Message(
        instance_id=str(row["PartitionKey"]),
        execution_id=row["ExecutionId"] or None,
        event=json.loads(_joined(row, "Event")),
        key=str(row["RowKey"]).removeprefix("m-"),
        due=datetime.fromisoformat(row["Due"]) if row["Due"] else None,
    )


def _pieces(name: str, text: str) -> Entity:
    """A long string over several properties: name, name_1, name_2, …"""
    parts = [text[i : i + PIECE] for i in range(0, len(text), PIECE)] or [""]
    return {(name if i == 0 else f"{name}_{i}"): part for i, part in enumerate(parts)}


def _joined(row: Entity, name: str) -> str:
    parts = [row[name]]
    index = 1
    while f"{name}_{index}" in row:
        parts.append(row[f"{name}_{index}"])
        index += 1
    return "".join(parts)
