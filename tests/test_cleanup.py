"""Expiry, on both backends: what has expired goes, everything else stays, exact counts."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import pytest

from shared import cleanup, limits
from shared.delivery_status import Created, StatusEvent
from shared.settings import Limit, Settings
from shared.store import Attempt, BroadcastRecord, IdempotencyRecord, Shards, Slots, Store
from shared.table_store import TableStore
from shared.voicemail import CallParties, RecordingEvent
from tests.conftest import Azurite, FakeClock, table_prefix

DAY = 86400
SETTINGS = Settings(
    limit_per_destination=Limit(5, 3600),
    limit_per_caller=Limit(30, 3600),
    limit_global=Limit(1000, DAY),
    state_retention_days=30,
)
ATTEMPT = Attempt("message", "+14155550100", "+15005550006", "digest", 0.0, "owner")


def put_key(store: Store, key: str, expires_at: float, lease_until: float = 0.0) -> None:
    record = IdempotencyRecord("f", expires_at, lease_until, attempt=ATTEMPT)
    store.update_key("scope", key, lambda current: record)


def key_exists(store: Store, key: str) -> bool:
    return store.update_key("scope", key, lambda current: None).record is not None


def counter(store: Store, name: str) -> Slots:
    """The slots of a counter's shards, added up."""
    seen: list[Slots] = []

    def look(current: Mapping[str, Shards]) -> None:
        seen.append(limits._merged([dict(slots) for slots in current[name]]))

    store.update_counters([name], look)
    return seen[0]


def test_the_counter_lifetime_is_the_longest_window_and_one_of_its_slots() -> None:
    assert cleanup.counter_lifetime(SETTINGS) == DAY + DAY / limits.SLOTS
    hourly = replace(SETTINGS, limit_global=None)
    assert cleanup.counter_lifetime(hourly) == 3600 + 60
    assert (
        cleanup.counter_lifetime(replace(hourly, limit_per_caller=None, limit_per_destination=None))
        == 0
    )


def test_expired_keys_go_and_live_ones_stay(store: Store, fake_clock: FakeClock) -> None:
    t0 = fake_clock.time
    put_key(store, "expired", t0 + 10)
    put_key(store, "released", 0.0)  # a send that never reached Twilio released its key
    put_key(store, "expires-now", t0 + 100)
    put_key(store, "live", t0 + DAY)
    put_key(store, "in-flight", t0 + DAY, lease_until=t0 + 150)
    assert store.purge_keys(t0 + 100) == 3
    assert {k: key_exists(store, k) for k in ("expired", "released", "expires-now", "live", "in-flight")} == {
        "expired": False, "released": False, "expires-now": False, "live": True, "in-flight": True,
    }  # fmt: skip
    assert store.purge_keys(t0 + 100) == 0


def test_counters_go_once_idle_for_the_longest_window_and_a_slot(
    store: Store, fake_clock: FakeClock
) -> None:
    t0 = fake_clock.time
    lifetime = cleanup.counter_lifetime(SETTINGS)
    # Charged as the app charges: the caller's, the global and the destination's rows.
    limits.enforce_limits(store, SETTINGS, caller="key:a", destination="+14155550100", now=t0)
    fake_clock.advance(10)
    store.update_counters(["recent"], lambda current: {("recent", 0): {7: 1}})
    rows = [
        limits.counter_name(c, limit)
        for c, limit in (
            ("caller:key:a", Limit(30, 3600)), ("global", Limit(1000, DAY)),
            ("destination:+14155550100", Limit(5, 3600)),
        )
    ]  # fmt: skip
    # An hour and a slot later the hourly rows count nothing, but the global row does.
    fake_clock.advance(3600 + 60)
    assert limits._live(counter(store, rows[1]), Limit(1000, DAY), fake_clock.time) != {}
    assert cleanup.purge(store, SETTINGS, fake_clock.time).counters == 0
    # At exactly the lifetime a row stays; past it, it goes.
    assert cleanup.purge(store, SETTINGS, t0 + lifetime).counters == 0
    assert cleanup.purge(store, SETTINGS, t0 + lifetime + 1).counters == 3
    assert [counter(store, row) for row in rows] == [{}, {}, {}]
    assert counter(store, "recent") == {7: 1}
    assert cleanup.purge(store, SETTINGS, t0 + 10 + lifetime + 1).counters == 1
    # A charge after the cleanup starts a fresh row, as for a new caller.
    limits.enforce_limits(
        store, SETTINGS, caller="key:a", destination="+14155550100", now=t0 + 2 * DAY
    )
    assert sum(counter(store, rows[0]).values()) == 1


def record_delivery(store: Store, sid: str, status: str = "queued") -> None:
    if status == "queued":
        store.record_created("message", sid, Created("key:a", "+14155550100", status, "t"))
    else:
        store.record_status("message", sid, StatusEvent(status, "t"))


def test_deliveries_go_after_the_retention_since_their_last_change(
    store: Store, fake_clock: FakeClock
) -> None:
    t0 = fake_clock.time
    record_delivery(store, "SM-old")
    record_delivery(store, "SM-late")
    fake_clock.advance(10 * DAY)
    record_delivery(store, "SM-young")
    fake_clock.advance(10 * DAY)
    record_delivery(store, "SM-late", "delivered")  # a late callback: changed at t0 + 20 days
    retention = SETTINGS.state_retention_days * DAY
    assert cleanup.purge(store, SETTINGS, t0 + retention).deliveries == 0
    assert cleanup.purge(store, SETTINGS, t0 + retention + 1).deliveries == 1
    assert [store.delivery("message", s) is not None for s in ("SM-old", "SM-young", "SM-late")] == [
        False, True, True,
    ]  # fmt: skip
    assert cleanup.purge(store, SETTINGS, t0 + 20 * DAY + retention + 1).deliveries == 2
    assert [store.delivery("message", s) for s in ("SM-young", "SM-late")] == [None, None]


def test_voicemails_go_after_the_retention_and_the_log_counts_them_without_numbers(
    store: Store, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = fake_clock.time
    old, young = "CA" + "a" * 32, "CA" + "b" * 32
    recording = RecordingEvent("RE" + "1" * 32, "completed", "t", url="https://r", duration=3)
    for call in (old, young):
        store.record_call_parties(call, CallParties("+14155550123", "+15005550006", "t"))
        store.record_recording(call, recording)
        fake_clock.advance(10 * DAY)
    retention = SETTINGS.state_retention_days * DAY
    assert cleanup.purge(store, SETTINGS, t0 + retention).voicemails == 0
    with caplog.at_level(logging.INFO, logger="shared.cleanup"):
        caplog.clear()
        assert cleanup.purge(store, SETTINGS, t0 + retention + 1) == cleanup.Purged(
            0, 0, 0, 0, 1, 0
        )
    assert caplog.messages == [
        "Cleanup deleted 0 idempotency keys, 0 limit counters, 0 delivery records, "
        "0 conversation records, 1 calls' voicemails, 0 broadcasts"
    ]
    assert [(v.call_sid, v.from_number) for v in store.voicemails(10)] == [(young, "+14155550123")]


def test_finished_broadcasts_go_after_the_retention_and_the_log_counts_them_without_numbers(
    store: Store, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = fake_clock.time
    for broadcast_id, results in (("b-done", 3), ("b-running", 2), ("b-done-too", 3)):
        record = BroadcastRecord(
            id=broadcast_id, caller="key:a", fingerprint="f", body="hi", from_number=None,
            messaging_service_sid="MG" + "0" * 32, total=3, chunk_size=2, rejected=0,
            created_at="t",
        )  # fmt: skip
        store.create_broadcast(record)
        store.add_broadcast_chunks(
            broadcast_id, [["+14155550101", "+14155550102"], ["+14155550103"]]
        )
        for index in range(results):
            store.record_recipient_result(broadcast_id, index, {"index": index, "status": "sent"})
    retention = SETTINGS.state_retention_days * DAY
    assert cleanup.purge(store, SETTINGS, t0 + retention).broadcasts == 0
    with caplog.at_level(logging.INFO, logger="shared.cleanup"):
        caplog.clear()
        assert cleanup.purge(store, SETTINGS, t0 + retention + 1) == cleanup.Purged(
            0, 0, 0, 0, 0, 2
        )
    assert caplog.messages == [
        "Cleanup deleted 0 idempotency keys, 0 limit counters, 0 delivery records, "
        "0 conversation records, 0 calls' voicemails, 2 broadcasts"
    ]
    assert [store.broadcast(b) is not None for b in ("b-done", "b-running", "b-done-too")] == [
        False, True, False,
    ]  # fmt: skip
    assert store.broadcast_chunk("b-running", 1) == ["+14155550103"]
    assert store.broadcast_chunk("b-done", 1) == []


def test_opt_outs_never_expire(store: Store, fake_clock: FakeClock) -> None:
    store.add_opt_out("+14155550100", ["+15005550006"])
    purged = cleanup.purge(store, SETTINGS, fake_clock.time + 3650 * DAY)
    assert purged == cleanup.Purged(0, 0, 0, 0, 0, 0)
    assert store.is_opted_out("+14155550100", "+15005550006") is True


def test_a_counter_deleted_while_it_is_charged_is_charged_afresh(
    azurite: Azurite, fake_clock: FakeClock
) -> None:
    store = TableStore(azurite.connection_string, table_prefix())
    store.update_counters(["c"], lambda current: {("c", 0): {1: 1}})
    raced: list[int] = []

    def charge(current: Mapping[str, Shards]) -> dict[tuple[str, int], Slots]:
        if not raced:  # the cleanup deletes the row between our read and our write
            raced.append(store.purge_counters(fake_clock.time + 1))
        return {("c", 0): {**current["c"][0], 2: 1}}

    store.update_counters(["c"], charge)
    assert (raced, counter(store, "c")) == ([1], {2: 1})
