"""One contract, two backends: the same tests against the in-memory store and Azurite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from shared import idempotency
from shared.delivery_status import Delivery, StatusEvent, advance, claim
from shared.memory_store import MemoryStore
from shared.store import (
    Attempt,
    BroadcastRecord,
    IdempotencyRecord,
    Slots,
    Store,
    StoredResponse,
)
from shared.table_store import TableStore
from tests.conftest import Azurite, table_prefix

SID = "SM" + "1" * 32
OK = StoredResponse(201, '{"sid": "SM1"}', "application/json", (("X-Test", "1"),))


@pytest.fixture(params=["memory", "table"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        azurite: Azurite = request.getfixturevalue("azurite")
        yield TableStore(azurite.connection_string, table_prefix())


def callback(store: Store, status: str, error_code: int | None = None) -> Delivery | None:
    event = StatusEvent(status, f"t-{status}", error_code)
    return store.update_delivery("message", SID, lambda cur: advance(cur, "message", SID, event))


def test_created_then_callbacks_in_order(store: Store) -> None:
    store.update_delivery(
        "message", SID,
        lambda cur: claim(cur, "message", SID, caller="ip:1", to="+14155550100", status="queued", at="t0"),
    )  # fmt: skip
    for status in ("queued", "sent", "sent", "delivered"):
        callback(store, status)
    record = store.delivery("message", SID)
    assert record == Delivery(
        kind="message", sid=SID, status="delivered",
        history=(StatusEvent("queued", "t0"), StatusEvent("sent", "t-sent"), StatusEvent("delivered", "t-delivered")),
        caller="ip:1", to="+14155550100", created_at="t0",
    )  # fmt: skip


def test_status_never_moves_backwards_and_terminal_stays(store: Store) -> None:
    callback(store, "delivered")
    callback(store, "sent")
    callback(store, "failed", 30008)
    assert store.delivery("message", SID) == Delivery(
        "message", SID, "delivered", (StatusEvent("delivered", "t-delivered"),)
    )
    callback(store, "read")
    assert store.delivery("message", SID).status == "read"  # type: ignore[union-attr]


def test_failure_keeps_its_error_code(store: Store) -> None:
    callback(store, "sent")
    callback(store, "undelivered", 30003)
    record = store.delivery("message", SID)
    assert record is not None
    assert (record.status, record.error_code) == ("undelivered", 30003)


def test_callbacks_before_creation_are_kept_and_the_owner_added(store: Store) -> None:
    callback(store, "sent")
    assert store.delivery("message", SID).caller is None  # type: ignore[union-attr]
    store.update_delivery(
        "message", SID,
        lambda cur: claim(cur, "message", SID, caller="ip:1", to="+1", status="queued", at="t0"),
    )  # fmt: skip
    record = store.delivery("message", SID)
    assert record is not None
    assert (record.status, record.caller, [e.status for e in record.history]) == (
        "sent",
        "ip:1",
        ["queued", "sent"],
    )


def test_unknown_sid(store: Store) -> None:
    assert store.delivery("call", SID) is None


def test_concurrent_updates_are_never_lost(store: Store) -> None:
    def append(index: int) -> None:
        store.update_delivery(
            "call", SID,
            lambda cur: replace(cur, history=(*cur.history, StatusEvent(str(index), "t")))
            if cur else Delivery("call", SID, "queued", (StatusEvent(str(index), "t"),)),
        )  # fmt: skip

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(append, range(20)))
    record = store.delivery("call", SID)
    assert record is not None
    assert sorted(int(e.status) for e in record.history) == list(range(20))


# Idempotency keys ---------------------------------------------------------------------


ATTEMPT = Attempt("message", "+14155550100", "+15005550006", "digest", 1000.0, "owner")


def test_key_records_persist_with_their_attempt(store: Store) -> None:
    first = IdempotencyRecord("f1", 2000.0, 1150.0, attempt=ATTEMPT)
    assert store.update_key("s", "k", lambda current: first) == first
    assert store.update_key("s", "k", lambda current: None) == first  # None: unchanged
    done = replace(first, response=OK, unknown=True)
    store.update_key(
        "s", "k", lambda current: replace(current, response=OK, unknown=True) if current else None
    )
    assert store.update_key("s", "k", lambda current: None) == done
    assert store.update_key("s", "other", lambda current: None) is None
    assert store.update_key("other", "k", lambda current: None) is None


def test_exactly_one_concurrent_claim_wins(store: Store) -> None:
    with ThreadPoolExecutor(10) as pool:
        states = list(
            pool.map(
                lambda _: idempotency.claim(store, "s", "k", "f", ATTEMPT, 1000.0)[0], range(20)
            )
        )
    assert sorted(states) == ["in_flight"] * 19 + ["new"]


# Counters and opt-outs ----------------------------------------------------------------


def bounded_increment(cap: int) -> Callable[[Slots], Slots | None]:
    def change(slots: Slots) -> Slots | None:
        if slots.get(0, 0) >= cap:
            return None
        return {**slots, 0: slots.get(0, 0) + 1}

    return change


def read_counter(store: Store, counter: str) -> Slots:
    seen: list[Slots] = []

    def look(slots: Slots) -> None:
        seen.append(dict(slots))

    store.update_counter(counter, look)
    return seen[-1]


def test_counter_updates_persist_and_none_changes_nothing(store: Store) -> None:
    assert read_counter(store, "c") == {}
    store.update_counter("c", lambda slots: {**slots, 5: 2, 7: 1})
    store.update_counter("c", lambda slots: None)
    assert read_counter(store, "c") == {5: 2, 7: 1}
    assert read_counter(store, "other") == {}


def test_concurrent_counter_updates_never_lose_one(store: Store) -> None:
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: store.update_counter("global", bounded_increment(7)), range(30)))
    assert read_counter(store, "global") == {0: 7}


def test_opt_outs(store: Store) -> None:
    assert store.is_opted_out("+14155550100") is False
    store.add_opt_out("+14155550100")
    store.add_opt_out("+14155550100")
    assert store.is_opted_out("+14155550100") is True
    assert store.is_opted_out("+14155550101") is False


def test_a_vanished_table_is_created_again(azurite: Azurite) -> None:
    prefix = table_prefix()
    store = TableStore(azurite.connection_string, prefix)
    store.update_counter("global", bounded_increment(5))
    from azure.data.tables import TableServiceClient

    TableServiceClient.from_connection_string(azurite.connection_string).delete_table(
        f"{prefix}Counters"
    )
    store.update_counter("global", bounded_increment(5))  # a fresh, empty table
    assert read_counter(store, "global") == {0: 1}


# Broadcasts ---------------------------------------------------------------------------


def broadcast_record(broadcast_id: str = "b1", total: int = 5) -> BroadcastRecord:
    return BroadcastRecord(
        id=broadcast_id, caller="ip:1", fingerprint="f", body="hi", from_number="+15005550006",
        messaging_service_sid=None, total=total, chunk_size=2, rejected=1, created_at="t0",
    )  # fmt: skip


def test_broadcast_record_is_created_once(store: Store) -> None:
    assert store.create_broadcast(broadcast_record()) is True
    assert store.create_broadcast(replace(broadcast_record(), body="other")) is False
    assert store.broadcast("b1") == broadcast_record()
    assert broadcast_record().chunks == 3
    assert store.broadcast("nope") is None
    store.forget_broadcast("b1")
    assert store.broadcast("b1") is None


def test_broadcast_chunks_results_and_cancel(store: Store) -> None:
    store.create_broadcast(broadcast_record())
    store.add_broadcast_chunks("b1", [["+1", "+2"], ["+3", "+4"], ["+5"]])
    assert [store.broadcast_chunk("b1", i) for i in range(4)] == [
        ["+1", "+2"],
        ["+3", "+4"],
        ["+5"],
        [],
    ]
    for index in (4, 0, 2):
        store.record_recipient_result("b1", index, {"index": index, "status": "sent"})
    store.record_recipient_result("b1", 2, {"index": 2, "status": "failed"})
    assert store.recipient_results("b1", 0, 3) == [
        {"index": 0, "status": "sent"},
        {"index": 2, "status": "failed"},
    ]
    assert store.recipient_results("b1", 3, 10) == [{"index": 4, "status": "sent"}]
    cancelled = store.update_broadcast("b1", lambda r: replace(r, cancelled=True, charged=True))
    assert cancelled is not None and (cancelled.cancelled, cancelled.charged) == (True, True)
    assert store.broadcast("b1") == cancelled
    assert store.update_broadcast("nope", lambda r: replace(r, cancelled=True)) is None
