"""Abuse limits and opt-outs: sliding windows, all-or-nothing charges, exact Retry-After.

The clock is a FakeClock, so window boundaries are where the test puts them.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from shared.errors import AppError
from shared.limits import SLOTS, check_before_send, enforce_limits, rules
from shared.memory_store import MemoryStore
from shared.settings import Limit, Settings, load_settings
from shared.store import Store, StoreUnavailable
from tests.conftest import (
    PUBLIC_BASE_URL,
    VALID_TO,
    FakeClock,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
    post_json,
)

SMS_URL = f"{PUBLIC_BASE_URL}/api/SendSms"
CALL_URL = f"{PUBLIC_BASE_URL}/api/MakeCall"
HOUR = 3600.0
T0 = 1_800_000_000.0 - (1_800_000_000.0 % 3600)  # on an hour boundary


def limits(**values: str) -> Settings:
    off = {"LIMIT_PER_DESTINATION": "off", "LIMIT_PER_CALLER": "off", "LIMIT_GLOBAL": "off"}
    return load_settings({**off, **values})


def refusal(call: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    with pytest.raises(AppError) as raised:
        call()
    error = raised.value
    return error.status_code, {"rule": error.extra.get("rule"), **error.extra}, error.headers


def send(store: Store, settings: Settings, now: float, *, caller: str = "c1",
         to: str = "+14155550100", amount: int = 1) -> None:  # fmt: skip
    enforce_limits(store, settings, caller=caller, destination=to, now=now, amount=amount)


# The rule itself, on both stores --------------------------------------------------------


def test_no_hour_ever_holds_more_than_the_limit_across_a_window_boundary(store: Store) -> None:
    settings = limits(LIMIT_PER_CALLER="5/hour")
    for i in range(5):  # the last minute before a fixed window would have reset
        send(store, settings, T0 - 50 + i, to=f"+1415555010{i}")
    status, extra, headers = refusal(lambda: send(store, settings, T0 + 10, to="+14155550109"))
    assert (status, extra) == (429, {"rule": "limit", "limit": "caller"})
    # The first charge sits in the slot [T0-60, T0): it leaves the window at T0-60+60+3600.
    assert headers == {"Retry-After": str(int(T0 + HOUR - (T0 + 10)))}
    refusal(lambda: send(store, settings, T0 + HOUR - 1, to="+14155550109"))
    send(store, settings, T0 + HOUR, to="+14155550109")  # exactly on time: accepted


def test_retry_after_is_when_enough_slots_have_left(store: Store) -> None:
    settings = limits(LIMIT_PER_CALLER="4/hour")
    for minute in (0, 10, 20, 30):
        send(store, settings, T0 + minute * 60, to=f"+1415555010{minute // 10}")
    _, _, headers = refusal(lambda: send(store, settings, T0 + 40 * 60, to="+14155550109"))
    assert headers == {"Retry-After": str(int(HOUR + 60 - 40 * 60))}
    # Needing two, the second-oldest slot (minute 10) must leave too.
    _, _, headers = refusal(lambda: send(store, settings, T0 + 40 * 60, amount=2))
    assert headers == {"Retry-After": str(int(10 * 60 + HOUR + 60 - 40 * 60))}


def test_a_refused_request_leaves_every_counter_as_it_was(store: Store) -> None:
    settings = limits(
        LIMIT_PER_CALLER="1/hour", LIMIT_PER_DESTINATION="2/hour", LIMIT_GLOBAL="3/hour"
    )
    send(store, settings, T0, caller="abuser", to="+14155550100")
    for _ in range(5):  # over its own limit: the victim's and the global quota stay whole
        _, extra, _ = refusal(lambda: send(store, settings, T0 + 1, caller="abuser"))
        assert extra["limit"] == "caller"
    send(store, settings, T0 + 2, caller="innocent", to="+14155550100")
    # The destination is now full: the caller and global limits are not charged either.
    _, extra, _ = refusal(lambda: send(store, settings, T0 + 3, caller="third", to="+14155550100"))
    assert extra == {"rule": "limit", "limit": "destination"}
    send(store, settings, T0 + 4, caller="third", to="+14155550101")  # its quota is intact
    _, extra, _ = refusal(lambda: send(store, settings, T0 + 5, caller="fourth", to="+14155550102"))
    assert extra["limit"] == "global"  # 3 sends so far: abuser, innocent, third


def test_a_limit_that_is_off_does_not_skip_the_others(store: Store) -> None:
    settings = limits(LIMIT_PER_CALLER="off", LIMIT_GLOBAL="2/day", LIMIT_PER_DESTINATION="5/hour")
    send(store, settings, T0)
    send(store, settings, T0 + 1)
    _, extra, _ = refusal(lambda: send(store, settings, T0 + 2))
    assert extra["limit"] == "global"


def test_more_than_a_limit_allows_at_once_is_refused_without_retry_after(store: Store) -> None:
    settings = limits(LIMIT_PER_CALLER="10/hour")
    status, extra, headers = refusal(
        lambda: enforce_limits(store, settings, caller="c", destination=None, now=T0, amount=11)
    )
    assert (status, extra, headers) == (429, {"rule": "limit", "limit": "caller"}, {})
    # Nothing was charged: the whole quota is still there.
    enforce_limits(store, settings, caller="c", destination=None, now=T0, amount=10)


def test_an_opted_out_recipient_is_refused_first_and_charges_nothing(store: Store) -> None:
    settings = limits(LIMIT_PER_CALLER="1/hour")
    store.add_opt_out("+14155550100", ["+15005550006"])
    check = functools.partial(
        check_before_send, store, settings, caller="c", sms_sender="+15005550006", now=T0
    )
    status, extra, _ = refusal(lambda: check(destination="+14155550100"))
    assert (status, extra) == (409, {"rule": "opt-out", "twilioCode": 21610})
    check(destination="+14155550101")  # the caller's one send an hour was not spent
    # Over the limit too: the recipient's own STOP is the answer, not a Retry-After.
    status, extra, _ = refusal(lambda: check(destination="+14155550100"))
    assert (status, extra) == (409, {"rule": "opt-out", "twilioCode": 21610})
    status, extra, _ = refusal(lambda: check(destination="+14155550102"))
    assert (status, extra) == (429, {"rule": "limit", "limit": "caller"})


def test_a_sharded_limit_reads_every_shard(store: Store) -> None:
    settings = limits(LIMIT_GLOBAL="800/hour")  # 8 shards; each charge lands on one of them
    for minute in range(8):
        enforce_limits(
            store, settings, caller="c", destination=None, now=T0 + minute * 60, amount=100
        )
    status, extra, headers = refusal(
        lambda: enforce_limits(store, settings, caller="c", destination=None, now=T0 + 600)
    )
    # Full however the charges were spread; room again when minute 0's slot leaves.
    assert (status, extra, headers) == (
        429, {"rule": "limit", "limit": "global"}, {"Retry-After": str(int(HOUR + 60 - 600))},
    )  # fmt: skip


def test_concurrent_requests_overshoot_a_sharded_limit_by_fewer_than_its_shards(
    store: Store,
) -> None:
    settings = limits(LIMIT_GLOBAL="1000/day")  # 10 shards
    enforce_limits(store, settings, caller="c", destination=None, now=T0, amount=990)

    def one(index: int) -> bool:
        try:
            enforce_limits(store, settings, caller=f"c{index}", destination=None, now=T0 + 1)
        except AppError:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        passed = sum(pool.map(one, range(40)))
    assert 10 <= passed <= 10 + 10 - 1
    # Sequentially nothing more passes: the overshoot never grows past one race.
    assert not one(99)


def test_a_small_limit_is_exact_under_concurrency(store: Store) -> None:
    settings = limits(LIMIT_PER_CALLER="7/hour")

    def one(index: int) -> bool:
        try:
            send(store, settings, T0, to=f"+1415555{index:04d}")
        except AppError:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(one, range(30))) == 7


def test_a_changed_window_counts_afresh(store: Store) -> None:
    # Slots are numbered in units of their window's slot: an hour's read as a minute's
    # would land decades off. Each window length keeps its own counter.
    for i in range(3):
        send(store, limits(LIMIT_PER_CALLER="3/hour"), T0 + i, to=f"+1415555010{i}")
    minutely = limits(LIMIT_PER_CALLER="3/minute")
    for i in range(3):
        send(store, minutely, T0 + 10 + i, to=f"+1415555011{i}")
    _, extra, _ = refusal(lambda: send(store, minutely, T0 + 20, to="+14155550120"))
    assert extra["limit"] == "caller"


def test_slots_cover_the_window_exactly() -> None:
    assert SLOTS == 60  # Retry-After above assumes one-minute slots in an hour


@pytest.mark.parametrize("remote", [False, True])
def test_the_opt_out_is_read_beside_the_counters_when_the_store_is_remote(remote: bool) -> None:
    class Watched(MemoryStore):
        """Where the opt-out was read: a remote store reads it on the pool, beside the
        counters; in memory, a thread hand-off would cost more than it saves."""

        def __init__(self) -> None:
            super().__init__()
            self.readers: list[str] = []

        def is_opted_out(self, number: str, sender: str) -> bool:
            self.readers.append(threading.current_thread().name)
            return super().is_opted_out(number, sender)

    store = Watched()
    store.remote = remote
    check_before_send(
        store, limits(LIMIT_PER_CALLER="1/hour"), caller="c", destination=VALID_TO,
        sms_sender="+15005550006", now=T0,
    )  # fmt: skip
    [reader] = store.readers
    here = threading.current_thread().name
    assert (reader == here, reader.startswith("store")) == (not remote, remote)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_counters_keep_their_names_in_the_store() -> None:
    # A renamed counter starts afresh: a deploy would forget what was counted, and while
    # two versions run side by side each would count on its own.
    settings = limits(
        LIMIT_PER_CALLER="5/hour", LIMIT_GLOBAL="100/day", LIMIT_PER_DESTINATION="3/minute"
    )
    applying = rules(settings, caller="c1", destination="+14155550100")
    assert [(rule.name, rule.counter) for rule in applying] == [
        ("caller", digest("caller:c1|3600")),
        ("global", digest("global|86400")),
        ("destination", digest("destination:+14155550100|60")),
    ]


def test_slots_that_count_nothing_are_not_written_back() -> None:
    store, settings = MemoryStore(), limits(LIMIT_PER_CALLER="5/hour")
    [rule] = rules(settings, caller="c1", destination=None)
    minute = int(T0 // 60)  # an hour's slots are a minute long
    store.update_counters(
        [rule.counter], lambda _: {(rule.counter, 0): {minute - 2: 2, minute - 1: 0}}
    )
    enforce_limits(store, settings, caller="c1", destination=None, now=T0)
    rows: list[Any] = []
    store.update_counters([rule.counter], lambda current: rows.append(current[rule.counter]))
    assert rows[0][0] == {minute - 2: 2, minute: 1}


# Through the routes --------------------------------------------------------------------


@pytest.fixture
def handlers(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> dict[str, Handler]:
    return functions


def test_per_destination_limit_counts_messages_and_calls(
    handlers: dict[str, Handler], app_env: SetEnv, sandbox: Sandbox, fake_clock: FakeClock
) -> None:
    app_env(LIMIT_PER_DESTINATION="3/hour")
    assert post_json(handlers["SendSms"], SMS_URL, {"to": VALID_TO, "body": "1"})[0] == 201
    assert post_json(handlers["MakeCall"], CALL_URL, {"to": VALID_TO})[0] == 201
    assert post_json(handlers["SendSms"], SMS_URL, {"to": VALID_TO, "body": "3"})[0] == 201
    fake_clock.advance(30 * 60)
    response = handlers["SendSms"](
        build_request("POST", SMS_URL, json_body={"to": VALID_TO, "body": "4"})
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(3600 + 60 - 30 * 60)
    assert body_of(response) == {
        "type": "urn:twilio-functions:problem:rate-limited",
        "title": "Too many requests",
        "status": 429,
        "detail": "The destination limit of 3 per hour is reached; nothing was sent.",
        "rule": "limit",
        "limit": "destination",
    }
    assert len(sandbox.requests()) == 3
    assert post_json(handlers["SendSms"], SMS_URL, {"to": "+14155550101", "body": "x"})[0] == 201


def test_global_limit(handlers: dict[str, Handler], app_env: SetEnv) -> None:
    app_env(LIMIT_GLOBAL="2/day")
    answers = [
        post_json(handlers["SendSms"], SMS_URL, {"to": f"+1415555010{i}", "body": "x"})
        for i in range(3)
    ]
    assert [status for status, _ in answers] == [201, 201, 429]
    assert (answers[2][1]["rule"], answers[2][1]["limit"]) == ("limit", "global")


def test_limits_can_be_switched_off(handlers: dict[str, Handler], app_env: SetEnv) -> None:
    app_env(LIMIT_PER_DESTINATION="off")
    statuses = {
        post_json(handlers["SendSms"], SMS_URL, {"to": VALID_TO, "body": "x"})[0] for _ in range(7)
    }
    assert statuses == {201}


def test_limit_settings_are_validated() -> None:
    settings = load_settings({"LIMIT_PER_CALLER": "10/minute", "LIMIT_GLOBAL": "off"})
    assert (settings.limit_per_caller.count, settings.limit_per_caller.window_seconds) == (10, 60)  # type: ignore[union-attr]
    assert settings.limit_global is None


def test_opt_out_is_remembered(handlers: dict[str, Handler], sandbox: Sandbox) -> None:
    first = post_json(handlers["SendSms"], SMS_URL, {"to": "+15005550004", "body": "x"})
    assert (first[0], first[1]["twilioCode"]) == (409, 21610)
    assert post_json(handlers["SendSms"], SMS_URL, {"to": "+15005550004", "body": "x"}) == (
        409,
        {
            "type": "urn:twilio-functions:problem:twilio",
            "title": "Recipient has opted out (replied STOP)",
            "status": 409,
            "detail": "The recipient replied STOP to this sender; Twilio will not deliver until they opt in.",
            "twilioCode": 21610,
            "rule": "opt-out",
        },
    )
    assert len(sandbox.requests()) == 1  # the second never reached Twilio


# Exact answers: the period named, Retry-After rounded up but never below 1 s -------------


def refused(call: Any) -> tuple[str, dict[str, str]]:
    with pytest.raises(AppError) as raised:
        call()
    assert raised.value.extra == {"rule": "limit", "limit": "caller"}
    return raised.value.detail, raised.value.headers


@pytest.mark.parametrize(
    ("setting", "period"),
    [("1/second", "second"), ("1/minute", "minute"), ("1/hour", "hour"), ("1/day", "day")],
)
def test_the_refusal_names_the_limit_and_its_period(setting: str, period: str) -> None:
    store, settings = MemoryStore(), limits(LIMIT_PER_CALLER=setting)
    send(store, settings, T0)
    detail, _ = refused(lambda: send(store, settings, T0))
    assert detail == f"The caller limit of 1 per {period} is reached; nothing was sent."
    detail, headers = refused(lambda: send(store, settings, T0, amount=2))
    assert (detail, headers) == (
        f"This needs 2, more than the caller limit of 1 per {period} allows at once; nothing was sent.",
        {},
    )


def test_a_window_without_a_name_is_given_in_seconds() -> None:
    store, settings = MemoryStore(), limits()
    odd = replace(settings, limit_per_caller=Limit(1, 120))
    send(store, odd, T0)
    detail, _ = refused(lambda: send(store, odd, T0))
    assert detail == "The caller limit of 1 per 120 s is reached; nothing was sent."


def test_retry_after_under_a_second_is_1_and_a_full_window_of_exactly_the_limit_waits() -> None:
    store, settings = MemoryStore(), limits(LIMIT_PER_CALLER="2/minute")  # one-second slots
    send(store, settings, T0, amount=2)  # exactly the limit at once: fits
    # The slot [T0, T0+1) leaves the window at T0+61; 0.8 s before that, wait 1 s, not 0 or 2.
    _, headers = refused(lambda: send(store, settings, T0 + 60.2, amount=2))
    assert headers == {"Retry-After": "1"}
    _, headers = refused(lambda: send(store, settings, T0 + 58.5))
    assert headers == {"Retry-After": "3"}  # 2.5 s, rounded up: retrying on time succeeds
    send(store, settings, T0 + 61, amount=2)


def test_a_store_that_is_down_refuses_unless_the_failure_mode_is_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Down(MemoryStore):
        def update_counters(self, *args: Any, **kwargs: Any) -> None:
            raise StoreUnavailable()

    closed = limits(LIMIT_PER_CALLER="1/hour")
    check = functools.partial(check_before_send, Down(), caller="c", destination=VALID_TO, now=T0)
    with pytest.raises(StoreUnavailable):
        check(closed, sms_sender=None)
    assert caplog.messages == []
    # Sent without limits, and said so.
    check(replace(closed, store_fail_open=True), sms_sender=None)
    assert caplog.messages == [
        "State store unavailable: sending without limits (STATE_STORE_FAILURE_MODE=open)"
    ]
    assert load_settings({"STATE_STORE_FAILURE_MODE": "open"}).store_fail_open is True
    assert load_settings({}).store_fail_open is False
