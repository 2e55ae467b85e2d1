"""Where the stand-in keeps instances: their status and history, and their inbox.

Durable keeps the same things in the app's storage account (history and instance
tables, control queues); the stand-in keeps, per instance, one status row, its current
execution's history and the messages not yet taken. Everything else it needs after a
restart is derived from those (standin.py `recover`): activities scheduled but without a
result are run again (at least once, as Durable does), timers are messages with a due
time, a sub-orchestration the history created but storage lacks is created again.

`purge` is the extension's purge by filter (api.py `_purge`): the instance with its
history and messages, as the provider deletes its instance row, history rows and blobs.

`commit` is the episode's commit point: history rows first (beyond the stored length
they are invisible), then the status row together with the consumed messages' deletion
and the episode's own new messages (its timers).
"""

from __future__ import annotations

import copy
import threading
from datetime import datetime
from typing import Protocol

from devhost.durable.instances import Instance, Message


class DurableStore(Protocol):
    name: str  # for the banner: "memory", "Azure Table Storage (…)"

    def create(self, instance: Instance, start: Message) -> bool:
        """Store a new instance and its start message; False while one with that id runs
        (a finished one is replaced, as the extension's default allows)."""
        ...

    def load(self, instance_id: str) -> Instance | None:
        """The instance with its current execution's history."""
        ...

    def add_messages(self, messages: list[Message]) -> None:
        """Deliver; a message whose key is already there is written again, not doubled."""
        ...

    def messages(self, instance_id: str) -> list[Message]: ...

    def commit(
        self,
        instance: Instance,
        stored_events: int,
        consumed: list[str],
        new_messages: list[Message],
    ) -> None:
        """After an episode: `instance.history[stored_events:]` is new for its execution
        (0 after continue-as-new), `consumed` are keys of messages taken."""
        ...

    def unfinished(self) -> list[str]:
        """Instances that are Pending or Running, or have messages waiting."""
        ...

    def named(self, name: str) -> list[tuple[str, datetime]]:
        """(id, created) of the instances of orchestrator `name`, any status (the console)."""
        ...

    def purge(
        self, created_from: datetime, created_to: datetime, statuses: frozenset[str] | None
    ) -> int:
        """Delete the instances created in [created_from, created_to] whose status is in
        `statuses` (None: any): status, history and messages, as a purge does; how many."""
        ...


class MemoryDurableStore:
    """One process's instances; gone when it stops (no STATE_STORE_CONNECTION)."""

    name = "memory (lost when devhost stops; set STATE_STORE_CONNECTION to keep it)"

    def __init__(self) -> None:
        self._instances: dict[str, Instance] = {}
        self._inbox: dict[str, dict[str, Message]] = {}
        self._lock = threading.Lock()

    def create(self, instance: Instance, start: Message) -> bool:
        with self._lock:
            existing = self._instances.get(instance.instance_id)
            if existing is not None and existing.running:
                return False
            self._instances[instance.instance_id] = copy.deepcopy(instance)
            self._inbox[instance.instance_id] = {start.key: start}
            return True

    def load(self, instance_id: str) -> Instance | None:
        with self._lock:
            found = self._instances.get(instance_id)
            return copy.deepcopy(found) if found else None

    def add_messages(self, messages: list[Message]) -> None:
        with self._lock:
            for message in messages:
                self._inbox.setdefault(message.instance_id, {})[message.key] = message

    def messages(self, instance_id: str) -> list[Message]:
        with self._lock:
            return list(self._inbox.get(instance_id, {}).values())

    def commit(
        self,
        instance: Instance,
        stored_events: int,
        consumed: list[str],
        new_messages: list[Message],
    ) -> None:
        with self._lock:
            self._instances[instance.instance_id] = copy.deepcopy(instance)
            inbox = self._inbox.setdefault(instance.instance_id, {})
            for key in consumed:
                inbox.pop(key, None)
            for message in new_messages:
                self._inbox.setdefault(message.instance_id, {})[message.key] = message

    def unfinished(self) -> list[str]:
        with self._lock:
            waiting = {i for i, inbox in self._inbox.items() if inbox}
            running = {i for i, instance in self._instances.items() if instance.running}
            return sorted(waiting | running)

    def named(self, name: str) -> list[tuple[str, datetime]]:
        with self._lock:
            return [(i, x.created) for i, x in self._instances.items() if x.name == name]

    def purge(
        self, created_from: datetime, created_to: datetime, statuses: frozenset[str] | None
    ) -> int:
        with self._lock:
            doomed = [
                i
                for i, x in self._instances.items()
                if purged_by(x.created, x.status, created_from, created_to, statuses)
            ]
            for instance_id in doomed:
                del self._instances[instance_id]
                self._inbox.pop(instance_id, None)
            return len(doomed)


def purged_by(
    created: datetime,
    status: str,
    created_from: datetime,
    created_to: datetime,
    statuses: frozenset[str] | None,
) -> bool:
    """Whether a purge by filter takes an instance (the provider's query: CreatedTime ge
    from and le to, RuntimeStatus one of them)."""
    in_range = created_from <= created <= created_to
    return in_range and (statuses is None or status in statuses)
