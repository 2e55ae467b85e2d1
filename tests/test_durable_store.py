"""Both places the Durable stand-in keeps instances behave alike: memory, and Azure Table
Storage on a real Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from devhost.durable import history as h
from devhost.durable import instances
from devhost.durable.framework import EPOCH
from devhost.durable.instances import Message, Parent
from devhost.durable.store import DurableStore, MemoryDurableStore
from devhost.durable.table_store import TableDurableStore
from tests.conftest import Azurite, table_prefix


@pytest.fixture(params=["memory", "tables"])
def store(request: pytest.FixtureRequest) -> Iterator[DurableStore]:
    if request.param == "memory":
        yield MemoryDurableStore()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    yield TableDurableStore(azurite.connection_string, f"{table_prefix()}DurableTest")


def test_an_instance_round_trips_with_its_history_and_inbox(store: DurableStore) -> None:
    parent = Parent("p", "e0", 3, "broadcast_orchestrator")
    instance, start = instances.new_instance("chunk", "p:3", '{"id": "b"}', EPOCH, "e1", parent)
    assert store.create(instance, start)
    assert store.unfinished() == ["p:3"]
    assert store.messages("p:3") == [start]

    # An episode: a long result (split over properties in Tables), a timer message.
    big = "x" * 70_000
    events = [h.orchestrator_started(EPOCH), start.event, h.task_scheduled(EPOCH, 0, "load", big)]
    instance.history, instance.status, instance.custom_status = events, "Running", {"n": 1}
    timer = Message(
        "p:3", "e1", h.timer_fired(EPOCH, 1, EPOCH), "e1:timer:1", due=EPOCH + timedelta(seconds=5)
    )
    store.commit(instance, 0, [start.key], [timer])
    loaded = store.load("p:3")
    assert loaded == instance
    assert store.messages("p:3") == [timer]
    assert not store.create(instance, start)  # still running: the id is taken

    # Delivering the same message twice keeps one.
    done = Message("p:3", "e1", h.task_completed(EPOCH, 0, '"ok"'), "e1:task:0")
    store.add_messages([done, done])
    assert sorted(m.key for m in store.messages("p:3")) == ["e1:task:0", "e1:timer:1"]

    # Continue-as-new: a new execution's history, counted from 0.
    instance.execution_id, instance.history = "e2", [h.orchestrator_started(EPOCH)]
    store.commit(instance, 0, ["e1:task:0", "e1:timer:1"], [])
    assert (store.load("p:3") or instance).history == [h.orchestrator_started(EPOCH)]
    assert store.messages("p:3") == []

    instance.status, instance.output = "Completed", {"sent": 1}
    store.commit(instance, 1, [], [])
    assert store.unfinished() == []
    assert store.load("missing") is None
    # A finished instance's id may be used again.
    fresh, again = instances.new_instance("chunk", "p:3", None, EPOCH, "e9")
    assert store.create(fresh, again)
    assert (store.load("p:3") or instance).execution_id == "e9"


def stored(
    store: DurableStore, instance_id: str, status: str, created: datetime, *, waiting: bool = True
) -> None:
    """An instance with a history (and a message waiting), as an episode leaves it."""
    instance, start = instances.new_instance("o", instance_id, '"in"', created, f"e-{instance_id}")
    assert store.create(instance, start)
    instance.status = status
    instance.history = [h.orchestrator_started(created), start.event]
    late = Message(instance_id, None, h.event_raised(created, "late", None), f"late-{instance_id}")
    store.commit(instance, 0, [start.key], [late] if waiting else [])


def test_a_purge_takes_the_instances_created_in_range_with_those_statuses(
    store: DurableStore,
) -> None:
    day = timedelta(days=1)
    stored(store, "old-done", "Completed", EPOCH)
    stored(store, "old-failed", "Failed", EPOCH + day)
    stored(store, "old-running", "Running", EPOCH)
    stored(store, "new-done", "Completed", EPOCH + 3 * day)
    ended = frozenset({"Completed", "Failed", "Terminated"})

    # Both ends inclusive, as the provider's query (ge, le).
    assert store.purge(EPOCH, EPOCH + day, ended) == 2
    for gone in ("old-done", "old-failed"):
        assert store.load(gone) is None
        assert store.messages(gone) == []
    assert {i: (store.load(i) or instance_of(i)).status for i in ("old-running", "new-done")} == {
        "old-running": "Running",
        "new-done": "Completed",
    }
    assert store.purge(EPOCH, EPOCH + day, ended) == 0
    # No statuses: any status, running too.
    assert store.purge(EPOCH, EPOCH + 3 * day, None) == 2
    assert store.unfinished() == []
    assert (store.load("old-running"), store.load("new-done")) == (None, None)


def instance_of(instance_id: str) -> instances.Instance:
    raise AssertionError(f"{instance_id} should still be stored")


def test_a_purge_leaves_no_row_of_the_instance_in_tables(azurite: Azurite) -> None:
    store = TableDurableStore(azurite.connection_string, f"{table_prefix()}DurableTest")
    stored(store, "gone", "Completed", EPOCH)
    stored(store, "kept", "Completed", EPOCH + timedelta(days=1))
    assert store.purge(EPOCH, EPOCH, frozenset({"Completed"})) == 1
    rows = store._table.query_entities("PartitionKey ne ''", select=["PartitionKey"])
    assert {str(r["PartitionKey"]) for r in rows} == {"kept"}
