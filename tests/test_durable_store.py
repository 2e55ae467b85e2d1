"""Both places the Durable stand-in keeps instances behave alike: memory, and Azure Table
Storage on a real Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

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
