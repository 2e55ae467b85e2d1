"""One contract, two backends: the same tests against the in-memory store and Azurite."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from shared import idempotency
from shared.delivery_status import Created, Delivery, StatusEvent
from shared.store import (
    COUNTER_SHARDS,
    Attempt,
    BroadcastRecord,
    ConversationMessage,
    ConversationPage,
    IdempotencyRecord,
    Shards,
    Slots,
    Store,
    StoredResponse,
    Versioned,
)
from shared.table_store import TableStore
from tests.conftest import Azurite, FakeClock, table_prefix

DAY = 86400
SID = "SM" + "1" * 32
OK = StoredResponse(201, '{"sid": "SM1"}', "application/json", (("X-Test", "1"),))


def callback(store: Store, status: str, at: str, error_code: int | None = None) -> bool:
    """A status callback arriving at `at` (sortable, as the ISO times stored are)."""
    return store.record_status("message", SID, StatusEvent(status, at, error_code))


def created(
    store: Store, status: str = "queued", caller: str = "ip:1", to: str = "+14155550100"
) -> None:
    store.record_created("message", SID, Created(caller=caller, to=to, status=status, at="t0"))


def test_created_then_callbacks_in_order(store: Store) -> None:
    created(store)
    arrivals = [("queued", "t1"), ("sent", "t2"), ("sent", "t3"), ("delivered", "t4")]
    assert [callback(store, status, at) for status, at in arrivals] == [True, True, False, True]
    record = store.delivery("message", SID)
    assert record == Delivery(
        kind="message", sid=SID, status="delivered",
        history=(StatusEvent("queued", "t0"), StatusEvent("sent", "t2"), StatusEvent("delivered", "t4")),
        caller="ip:1", to="+14155550100", created_at="t0",
    )  # fmt: skip


def test_status_never_moves_backwards_and_terminal_stays(store: Store) -> None:
    callback(store, "delivered", "t1")
    callback(store, "sent", "t2")
    callback(store, "failed", "t3", 30008)
    assert store.delivery("message", SID) == Delivery(
        "message", SID, "delivered", (StatusEvent("delivered", "t1"),)
    )
    callback(store, "read", "t4")
    assert store.delivery("message", SID).status == "read"  # type: ignore[union-attr]


def test_a_repeated_status_keeps_the_first(store: Store) -> None:
    assert store.record_status("call", SID, StatusEvent("completed", "t1", duration=30)) is True
    assert store.record_status("call", SID, StatusEvent("completed", "t2", duration=99)) is False
    assert store.delivery("call", SID) == Delivery(
        "call", SID, "completed", (StatusEvent("completed", "t1", duration=30),), duration=30
    )


def test_failure_keeps_its_error_code(store: Store) -> None:
    callback(store, "sent", "t1")
    callback(store, "undelivered", "t2", 30003)
    record = store.delivery("message", SID)
    assert record is not None
    assert (record.status, record.error_code) == ("undelivered", 30003)


def test_callbacks_before_creation_are_kept_and_the_owner_added(store: Store) -> None:
    callback(store, "sent", "t1")
    assert store.delivery("message", SID).caller is None  # type: ignore[union-attr]
    created(store, to="+1")
    record = store.delivery("message", SID)
    assert record is not None
    assert (record.status, record.caller, [e.status for e in record.history]) == (
        "sent",
        "ip:1",
        ["queued", "sent"],
    )


def test_messages_and_calls_with_one_sid_stay_apart(store: Store) -> None:
    created(store)
    store.record_status("call", SID, StatusEvent("ringing", "t1"))
    assert store.delivery("message", SID) == Delivery(
        "message", SID, "queued", (StatusEvent("queued", "t0"),),
        caller="ip:1", to="+14155550100", created_at="t0",
    )  # fmt: skip
    assert store.delivery("call", SID) == Delivery(
        "call", SID, "ringing", (StatusEvent("ringing", "t1"),)
    )


def test_unknown_sid(store: Store) -> None:
    assert store.delivery("call", SID) is None


def test_concurrent_callbacks_are_each_stored_once(store: Store) -> None:
    statuses = ["queued", "initiated", "ringing", "in-progress", "completed"] * 4

    def one(index_status: tuple[int, str]) -> bool:
        index, status = index_status
        return store.record_status("call", SID, StatusEvent(status, f"t{index:02d}"))

    with ThreadPoolExecutor(10) as pool:
        stored = list(pool.map(one, enumerate(statuses)))
    assert sum(stored) == 5  # each status once, whichever of its repeats came first
    record = store.delivery("call", SID)
    assert record is not None and record.status == "completed"


# Idempotency keys ---------------------------------------------------------------------


ATTEMPT = Attempt("message", "+14155550100", "+15005550006", "digest", 1000.0, "owner")


def test_key_records_persist_with_their_attempt(store: Store) -> None:
    first = IdempotencyRecord("f1", 2000.0, 1150.0, attempt=ATTEMPT)
    claimed = store.update_key("s", "k", lambda current: first)
    assert claimed.record == first and claimed.version is not None
    assert store.update_key("s", "k", lambda current: None) == claimed  # None: unchanged
    done = replace(first, response=OK, unknown=True)
    store.update_key(
        "s", "k", lambda current: replace(current, response=OK, unknown=True) if current else None
    )
    assert store.update_key("s", "k", lambda current: None).record == done
    assert store.update_key("s", "other", lambda current: None) == Versioned(None, None)
    assert store.update_key("other", "k", lambda current: None) == Versioned(None, None)


def test_replace_key_writes_only_over_the_version_it_names(store: Store) -> None:
    first = IdempotencyRecord("f1", 2000.0, 1150.0, attempt=ATTEMPT)
    version = store.update_key("s", "k", lambda current: first).version
    assert version is not None
    done = replace(first, response=OK)
    assert store.replace_key("s", "k", done, version) is True
    assert store.replace_key("s", "k", replace(first, unknown=True), version) is False
    after = store.update_key("s", "k", lambda current: None)
    assert after.record == done and after.version not in (None, version)
    assert store.replace_key("s", "absent", done, version) is False
    assert store.update_key("s", "absent", lambda current: None) == Versioned(None, None)


def test_an_expired_key_is_claimed_again(store: Store) -> None:
    old = IdempotencyRecord("f1", 500.0, 150.0, attempt=ATTEMPT)
    store.update_key("s", "k", lambda current: old)
    assert idempotency.claim(store, "s", "k", "f2", ATTEMPT, 1000.0)[:2] == ("new", old)
    assert store.update_key("s", "k", lambda current: None).record == IdempotencyRecord(
        "f2", 1000.0 + idempotency.KEY_TTL_SECONDS, 1000.0 + idempotency.LEASE_SECONDS,
        attempt=ATTEMPT,
    )  # fmt: skip


def test_exactly_one_concurrent_claim_wins(store: Store) -> None:
    with ThreadPoolExecutor(10) as pool:
        states = list(
            pool.map(
                lambda _: idempotency.claim(store, "s", "k", "f", ATTEMPT, 1000.0)[0], range(20)
            )
        )
    assert sorted(states) == ["in_flight"] * 19 + ["new"]


# Counters and opt-outs ----------------------------------------------------------------


Change = Callable[[Mapping[str, Shards]], dict[tuple[str, int], Slots] | None]


def bounded_increment(cap: int, *counters: str, shard: int = 0) -> Change:
    """Add one to slot 0 of a shard of every counter, unless the first's is at `cap`."""

    def change(current: Mapping[str, Shards]) -> dict[tuple[str, int], Slots] | None:
        if current[counters[0]][shard].get(0, 0) >= cap:
            return None
        return {
            (c, shard): {**current[c][shard], 0: current[c][shard].get(0, 0) + 1} for c in counters
        }

    return change


def read_counters(store: Store, *counters: str) -> dict[str, dict[int, Slots]]:
    """Each counter's shards that hold anything."""
    seen: list[dict[str, dict[int, Slots]]] = []

    def look(current: Mapping[str, Shards]) -> None:
        assert all(len(shards) == COUNTER_SHARDS for shards in current.values())
        seen.append(
            {c: {i: dict(s) for i, s in enumerate(shards) if s} for c, shards in current.items()}
        )

    store.update_counters(counters, look)
    return seen[-1]


def test_counter_updates_persist_and_none_changes_nothing(store: Store) -> None:
    assert read_counters(store, "c", "d") == {"c": {}, "d": {}}
    store.update_counters(["c", "d"], lambda current: {("c", 0): {5: 2, 7: 1}, ("c", 15): {7: 1}})
    store.update_counters(["c"], lambda current: None)
    assert read_counters(store, "c", "d", "other") == {
        "c": {0: {5: 2, 7: 1}, 15: {7: 1}}, "d": {}, "other": {},
    }  # fmt: skip


def test_counters_whose_names_prefix_each_other_stay_apart(store: Store) -> None:
    store.update_counters(["a", "a-b"], lambda current: {("a", 1): {1: 1}, ("a-b", 2): {2: 2}})
    assert read_counters(store, "a") == {"a": {1: {1: 1}}}
    assert read_counters(store, "a-b") == {"a-b": {2: {2: 2}}}


def test_concurrent_counter_updates_never_lose_one_and_change_all_or_none(store: Store) -> None:
    change = bounded_increment(7, "global", "caller", "destination", shard=3)
    with ThreadPoolExecutor(10) as pool:
        list(
            pool.map(
                lambda _: store.update_counters(["global", "caller", "destination"], change),
                range(30),
            )
        )
    assert read_counters(store, "global", "caller", "destination") == {
        "global": {3: {0: 7}}, "caller": {3: {0: 7}}, "destination": {3: {0: 7}},
    }  # fmt: skip


def test_counter_change_may_wait_on_an_opt_out_read(store: Store) -> None:
    store.add_opt_out("+14155550100", ["+15005550006"])
    with ThreadPoolExecutor(1) as pool:
        opted = pool.submit(store.is_opted_out, "+14155550100", "+15005550006")
        store.update_counters(["c"], lambda current: {("c", 0): {0: int(opted.result(timeout=10))}})
    assert read_counters(store, "c") == {"c": {0: {0: 1}}}


def test_opt_outs_are_per_recipient_and_sender(store: Store) -> None:
    number, sender, service = "+14155550100", "+15005550006", "MG" + "a" * 32
    assert store.is_opted_out(number, sender) is False
    store.add_opt_out(number, [service, sender])
    store.add_opt_out(number, [sender])  # again: no harm
    assert store.is_opted_out(number, sender) is True
    assert store.is_opted_out(number, service) is True
    assert store.is_opted_out(number, "+14155550199") is False  # another sender
    assert store.is_opted_out("+14155550101", sender) is False  # another recipient
    store.remove_opt_out(number, [service, sender])
    store.remove_opt_out(number, [service, sender])  # again, with nothing left: no harm
    assert (store.is_opted_out(number, sender), store.is_opted_out(number, service)) == (
        False,
        False,
    )


# Conversations ---------------------------------------------------------------------------

PHONE, OURS, SERVICE = "+14155550100", "+15005550006", "MG" + "b" * 32


def sent(sid: int, at: float, to: str = PHONE, body: str = "hi") -> ConversationMessage:
    return ConversationMessage(
        sid=f"SM{sid:032d}", direction="outbound", from_=OURS, to=to, body=body, at=at,
        media=(("https://example.com/a.jpg", ""),), messaging_service_sid=None,
    )  # fmt: skip


def received(sid: int, at: float, from_: str = PHONE, body: str = "re") -> ConversationMessage:
    return ConversationMessage(
        sid=f"SM{sid:032x}", direction="inbound", from_=from_, to=OURS, body=body, at=at,
        media=(("https://api.twilio.com/m/1", "image/png"),), messaging_service_sid=SERVICE,
    )  # fmt: skip


def whole(store: Store, caller: str, number: str, limit: int) -> list[ConversationPage]:
    pages = [store.conversation(caller, number, None, limit)]
    while pages[-1].after is not None:
        pages.append(store.conversation(caller, number, pages[-1].after, limit))
    return pages


def test_a_conversation_is_the_callers_sends_and_the_replies_since_newest_first(
    store: Store,
) -> None:
    early = received(1, 1000.0)  # before anyone sent to the number: nobody's conversation
    assert store.record_inbound_message(early) is True
    store.record_sent_message("alice", sent(2, 1001.0))
    store.record_sent_message("alice", sent(3, 1002.5, to="+14155550101"))
    reply = received(4, 1003.0, body="STOP? no: " + "é" * 1590)
    assert store.record_inbound_message(reply) is True
    assert store.record_inbound_message(replace(reply, at=1009.0, body="again")) is False
    store.record_sent_message("bob", sent(5, 1004.0))
    later = received(6, 1005.0)
    assert store.record_inbound_message(later) is True
    assert store.conversation("alice", PHONE, None, 10) == ConversationPage(
        [later, reply, sent(2, 1001.0)], None
    )
    assert store.conversation("bob", PHONE, None, 10) == ConversationPage(
        [later, sent(5, 1004.0)], None
    )
    assert store.conversation("alice", "+14155550101", None, 10).messages == [
        sent(3, 1002.5, to="+14155550101")
    ]
    # Nobody else sees anything, not even that the number wrote.
    assert store.conversation("mallory", PHONE, None, 10) == ConversationPage([], None)
    assert store.conversation("alice", "+14155550102", None, 10) == ConversationPage([], None)


def test_conversation_pages_are_exact_and_continue_where_they_stopped(store: Store) -> None:
    for i in range(7):
        store.record_sent_message("alice", sent(i, 2000.0 + i))
    store.record_sent_message("alice", sent(99, 2003.0))  # the same millisecond as SM…3
    pages = whole(store, "alice", PHONE, 3)
    assert [[m.sid[-2:] for m in page.messages] for page in pages] == [
        ["06", "05", "04"], ["03", "99", "02"], ["01", "00"],
    ]  # fmt: skip
    assert [page.after is None for page in pages] == [False, False, True]
    # Exactly full: no empty page after it.
    assert [len(p.messages) for p in whole(store, "alice", PHONE, 4)] == [4, 4]
    assert [len(p.messages) for p in whole(store, "alice", PHONE, 8)] == [8]


def test_a_reply_reaches_every_caller_that_had_sent_even_past_one_transaction(
    store: Store,
) -> None:
    callers = [f"caller-{i}" for i in range(130)]  # a transaction holds 100 rows
    for i, caller in enumerate(callers):
        store.record_sent_message(caller, sent(i, 3000.0))
    assert store.record_inbound_message(received(999, 3001.0)) is True
    assert store.record_inbound_message(received(999, 3001.0)) is False
    firsts = {c: store.conversation(c, PHONE, None, 1).messages[0].sid for c in callers}
    assert set(firsts.values()) == {received(999, 0).sid}


def test_old_conversation_records_are_purged(store: Store) -> None:
    store.record_sent_message("alice", sent(1, 100.0))
    store.record_inbound_message(received(2, 200.0))
    store.record_sent_message("alice", sent(3, 300.0))
    # alice's link to the number (last send at 300) stays, with what is newer than 250.
    assert store.purge_conversations(250.0) == 3  # two of alice's views, the stored reply
    assert store.conversation("alice", PHONE, None, 10).messages == [sent(3, 300.0)]
    assert store.purge_conversations(250.0) == 0
    assert store.purge_conversations(301.0) == 2  # the link and the last view
    store.record_inbound_message(received(4, 400.0))
    assert store.conversation("alice", PHONE, None, 10).messages == []


def test_a_vanished_table_is_created_again(azurite: Azurite) -> None:
    prefix = table_prefix()
    store = TableStore(azurite.connection_string, prefix)
    store.update_counters(["global"], bounded_increment(5, "global"))
    from azure.data.tables import TableServiceClient

    TableServiceClient.from_connection_string(azurite.connection_string).delete_table(
        f"{prefix}Counters"
    )
    store.update_counters(["global"], bounded_increment(5, "global"))  # a fresh, empty table
    assert read_counters(store, "global") == {"global": {0: {0: 1}}}


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


# Broadcasts' expiry: a broadcast's parts go together, once it is finished and old.


def put_broadcast(
    store: Store, broadcast_id: str, total: int, results: int, *, chunk_size: int = 2
) -> None:
    """A started broadcast, its first `results` recipients with their results."""
    store.create_broadcast(replace(broadcast_record(broadcast_id, total), chunk_size=chunk_size))
    numbers = [f"+1415555{i:04d}" for i in range(total)]
    chunks = [numbers[i : i + chunk_size] for i in range(0, total, chunk_size)]
    store.add_broadcast_chunks(broadcast_id, chunks)
    for index in range(results):
        result = {"index": index, "to": numbers[index], "status": "sent"}
        store.record_recipient_result(broadcast_id, index, result)


def kept(store: Store, broadcast_id: str, chunks: int = 3) -> tuple[bool, int, int]:
    """What is left of a broadcast: its record, its recipients in chunks, its results."""
    numbers = sum(len(store.broadcast_chunk(broadcast_id, i)) for i in range(chunks + 1))
    results = len(store.recipient_results(broadcast_id, 0, 1000))
    return store.broadcast(broadcast_id) is not None, numbers, results


def test_finished_broadcasts_go_whole_after_their_last_change_running_ones_never(
    store: Store, fake_clock: FakeClock
) -> None:
    t0 = fake_clock.time
    put_broadcast(store, "done", 5, results=5)
    put_broadcast(store, "cancelled", 5, results=1)
    store.update_broadcast("cancelled", lambda r: replace(r, cancelled=True))
    put_broadcast(store, "running", 5, results=4)
    put_broadcast(store, "late", 5, results=4)
    fake_clock.advance(10)
    store.record_recipient_result("late", 4, {"index": 4, "status": "sent"})  # done at t0 + 10
    assert store.purge_broadcasts(t0) == 0  # last changed exactly at the cutoff: kept
    assert store.purge_broadcasts(t0 + 1) == 2
    assert {b: kept(store, b) for b in ("done", "cancelled", "running", "late")} == {
        "done": (False, 0, 0), "cancelled": (False, 0, 0),
        "running": (True, 5, 4), "late": (True, 5, 5),
    }  # fmt: skip
    assert store.purge_broadcasts(t0 + 10) == 0
    assert store.purge_broadcasts(t0 + 11) == 1
    assert kept(store, "late") == (False, 0, 0)
    # Running (a recipient has no result yet, nor was it cancelled): kept however old.
    assert store.purge_broadcasts(t0 + 3650 * DAY) == 0
    assert kept(store, "running") == (True, 5, 4)
    # Its last result finishes it, and is its last change.
    fake_clock.advance(DAY)
    store.record_recipient_result("running", 4, {"index": 4, "status": "failed"})
    assert store.purge_broadcasts(fake_clock.time) == 0
    assert store.purge_broadcasts(fake_clock.time + 1) == 1
    assert kept(store, "running") == (False, 0, 0)


def test_a_broadcast_of_hundreds_of_rows_goes_whole_in_transactions_of_100(
    store: Store, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_broadcast(store, "big", 250, results=250, chunk_size=100)  # 1 + 3 + 250 rows
    put_broadcast(store, "other", 5, results=4)
    sizes: list[int] = []
    if isinstance(store, TableStore):
        table = store._table("Broadcasts")
        submit = table.submit_transaction

        def recording(operations: Any, **kwargs: Any) -> Any:
            sizes.append(len(list(operations)))
            return submit(operations, **kwargs)

        monkeypatch.setattr(table, "submit_transaction", recording)
    assert store.purge_broadcasts(fake_clock.time + 1) == 1
    assert (kept(store, "big"), kept(store, "other")) == ((False, 0, 0), (True, 5, 4))
    if isinstance(store, TableStore):
        assert sizes == [100, 100, 54]
        assert {row["PartitionKey"] for row in table.list_entities()} == {"other"}


def test_a_broadcast_purge_cut_short_goes_on_at_the_next_run(
    azurite: Azurite, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TableStore(azurite.connection_string, table_prefix())
    put_broadcast(store, "big", 250, results=250, chunk_size=100)
    delete = TableStore._delete_as_read
    calls: list[int] = []

    def first_only(table: Any, rows: list[Any]) -> bool:  # then a row changed, or a crash
        calls.append(len(rows))
        return delete(table, rows) if len(calls) == 1 else False

    monkeypatch.setattr(TableStore, "_delete_as_read", staticmethod(first_only))
    assert store.purge_broadcasts(fake_clock.time + 1) == 0
    # The chunks and 97 results went; the record goes last, so the next run finds the rest,
    # and knows it finished though most of its results are gone.
    assert (calls, kept(store, "big")) == ([100, 100], (True, 0, 153))
    monkeypatch.undo()
    assert store.purge_broadcasts(fake_clock.time + 1) == 1
    assert kept(store, "big") == (False, 0, 0)


def test_the_counters_query_stays_within_table_storages_15_comparisons(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Azurite accepts any filter; Table Storage refuses one with more than 15 comparisons
    # ("Querying tables and entities", learn.microsoft.com). A request charges 3 counters.
    store = TableStore(azurite.connection_string, table_prefix())
    table = store._table("Counters")
    filters: list[str] = []
    query = table.query_entities

    def recording(query_filter: str, **kwargs: Any) -> Any:
        filters.append(query_filter)
        return query(query_filter, **kwargs)

    monkeypatch.setattr(table, "query_entities", recording)
    counters = ["caller", "global", "destination"]
    store.update_counters(counters, lambda current: {(c, 15): {1: 1} for c in counters})
    assert read_counters(store, *counters) == {c: {15: {1: 1}} for c in counters}
    comparisons = [len(re.findall(r" (?:eq|ne|gt|ge|lt|le) ", f)) for f in filters]
    assert comparisons == [7, 7]
    with pytest.raises(ValueError, match="at most 7 counters"):
        store.update_counters([str(i) for i in range(8)], lambda current: None)


def test_no_phone_number_or_caller_is_in_a_conversation_key(azurite: Azurite) -> None:
    store = TableStore(azurite.connection_string, table_prefix())
    store.record_sent_message("key:alice", sent(1, 100.0))
    store.record_inbound_message(received(2, 200.0))
    store.add_opt_out(PHONE, [OURS, SERVICE])
    keys = [
        f"{row['PartitionKey']} {row['RowKey']}"
        for name in ("Conversations", "OptOuts")
        for row in store._table(name).list_entities()
    ]
    assert len(keys) == 6  # the link, two views, the stored reply; two opt-outs
    assert [k for k in keys if re.search(r"\+|1415555|5005550|alice|MG", k)] == []
