"""State over real sockets and processes: devhost instances, the sandbox, a real Azurite."""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TEST_NUMBER_PREFIX,
    VALID_FROM,
    VALID_TO,
    Azurite,
    DevHost,
    Sandbox,
    start_devhost,
    table_prefix,
)


def app_env(sandbox: Sandbox, azurite: Azurite, **extra: str) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": sandbox.url,
        "TWILIO_FROM_NUMBER": VALID_FROM,
        "STATE_STORE_CONNECTION": azurite.connection_string,
        "STATE_TABLE_PREFIX": table_prefix(),
        "LIMIT_PER_CALLER": "off",
        "NUMBER_TYPE_EXCEPTIONS": TEST_NUMBER_PREFIX,
        **extra,
    }


@pytest.fixture
def two_hosts(
    sandbox: Sandbox, azurite: Azurite, request: pytest.FixtureRequest
) -> Iterator[list[DevHost]]:
    """Two worker processes sharing one storage account, like two Function App instances."""
    env = app_env(sandbox, azurite, **getattr(request, "param", {}))
    hosts = [start_devhost(env), start_devhost(env)]
    yield hosts
    for host in hosts:
        host.stop()


def post(url: str, payload: dict[str, Any], key: str | None = None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(url, json=payload, headers=headers, timeout=30)


def test_sms_and_call_reach_their_final_status(devhost: DevHost) -> None:
    sms = post(f"{devhost.url}/api/SendSms", {"to": "+14155550150", "body": "status please"}).json()
    devhost.sandbox.get(f"/sandbox/messages/{sms['sid']}?wait=10")
    status = requests.get(f"{devhost.url}/api/messages/{sms['sid']}", timeout=10).json()
    assert (status["status"], [h["status"] for h in status["history"]]) == (
        "delivered", ["queued", "sent", "delivered"],
    )  # fmt: skip

    call = post(f"{devhost.url}/api/MakeCall", {"to": "+14155550150", "message": "hi"}).json()
    devhost.sandbox.settled_call(call["sid"])
    status = requests.get(f"{devhost.url}/api/calls/{call['sid']}", timeout=10).json()
    assert (status["status"], status["duration"], [h["status"] for h in status["history"]]) == (
        "completed", 1, ["queued", "initiated", "ringing", "in-progress", "completed"],
    )  # fmt: skip


def test_undelivered_sms_shows_the_error(devhost: DevHost) -> None:
    sms = post(f"{devhost.url}/api/SendSms", {"to": "+15005550303", "body": "x"}).json()
    devhost.sandbox.get(f"/sandbox/messages/{sms['sid']}?wait=10")
    status = requests.get(f"{devhost.url}/api/messages/{sms['sid']}", timeout=10).json()
    assert (status["status"], status["errorCode"]) == ("undelivered", 30003)


def test_unknown_sid_is_404(devhost: DevHost) -> None:
    response = requests.get(f"{devhost.url}/api/calls/CA{'9' * 32}", timeout=10)
    assert (response.status_code, response.headers["Content-Type"]) == (
        404,
        "application/problem+json",
    )


def test_fifty_concurrent_duplicates_send_exactly_once(
    two_hosts: list[DevHost], sandbox: Sandbox
) -> None:
    payload = {"to": VALID_TO, "body": "exactly once"}
    urls = [f"{two_hosts[i % 2].url}/api/SendSms" for i in range(50)]
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda url: post(url, payload, key="order-42"), urls))
    created = [r for r in responses if r.status_code == 201]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_flight) == 50
    assert len({r.text for r in created}) == 1  # every success is the same answer
    assert {(r.headers["Retry-After"], r.json()["title"]) for r in in_flight} <= {
        ("1", "Request in progress")
    }
    assert len(sandbox.messages()) == 1
    # Once settled, every repeat gets the first answer, from either process.
    replays = [post(f"{host.url}/api/SendSms", payload, key="order-42") for host in two_hosts]
    assert {(r.status_code, r.text, r.headers["Idempotent-Replayed"]) for r in replays} == {
        (201, created[0].text, "true")
    }
    other = post(f"{two_hosts[1].url}/api/SendSms", {**payload, "body": "changed"}, key="order-42")
    assert (other.status_code, other.json()["title"]) == (422, "Idempotency-Key reused")
    assert len(sandbox.messages()) == 1


@pytest.mark.parametrize("to", ["+15005550501", "+15005550502"])
def test_a_lost_answer_is_sent_exactly_once_however_often_it_is_retried(
    two_hosts: list[DevHost], sandbox: Sandbox, to: str
) -> None:
    # The sandbox creates the message, then answers 500 (…501) or resets the connection
    # (…502): Twilio has it, the app never heard. Retries go to both processes.
    payload = {"to": to, "body": "exactly once"}
    first = post(f"{two_hosts[0].url}/api/SendSms", payload, key="lost-1")
    assert (first.status_code, first.json()["outcome"]) == (502, "unknown")
    retries = [post(f"{two_hosts[i % 2].url}/api/SendSms", payload, key="lost-1") for i in range(6)]
    [message] = [m for m in sandbox.messages() if m["to"] == to]
    assert {(r.status_code, r.json()["sid"]) for r in retries} == {(201, message["sid"])}
    assert len([m for m in sandbox.messages() if m["to"] == to]) == 1


def test_a_crash_mid_send_is_found_after_a_restart_not_sent_again(
    sandbox: Sandbox, azurite: Azurite
) -> None:
    env = app_env(sandbox, azurite, TWILIO_TIMEOUT_SECONDS="3")
    payload = {"to": "+15005550504", "body": "crash"}  # Twilio creates it 2 s later
    host = start_devhost(env)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, f"{host.url}/api/SendSms", payload, "crash-1")
        deadline = time.monotonic() + 10
        while not any(r["to"] == payload["to"] for r in sandbox.requests()):  # at Twilio now
            assert time.monotonic() < deadline, host.log()
            time.sleep(0.05)
        host.process.kill()  # kill -9: no settling, no cleanup
        host.process.wait(10)
        with pytest.raises(requests.ConnectionError):
            pending.result()
    host.stop()
    restarted = start_devhost(env)
    try:
        deadline = time.monotonic() + 30
        while (
            retry := post(f"{restarted.url}/api/SendSms", payload, key="crash-1")
        ).status_code == 409:
            assert time.monotonic() < deadline, restarted.log()
            time.sleep(min(float(retry.headers["Retry-After"]), 2.0))
        [message] = [m for m in sandbox.messages() if m["body"] == "crash"]
        assert (retry.status_code, retry.json()["sid"]) == (201, message["sid"])
        assert len([m for m in sandbox.messages() if m["body"] == "crash"]) == 1
    finally:
        restarted.stop()


@pytest.mark.parametrize("two_hosts", [{"LIMIT_PER_DESTINATION": "10/hour"}], indirect=True)
def test_limits_hold_across_processes(two_hosts: list[DevHost], sandbox: Sandbox) -> None:
    urls = [f"{two_hosts[i % 2].url}/api/SendSms" for i in range(40)]
    with ThreadPoolExecutor(20) as pool:
        statuses = list(
            pool.map(lambda url: post(url, {"to": VALID_TO, "body": "x"}).status_code, urls)
        )
    assert (statuses.count(201), statuses.count(429)) == (10, 30)
    assert len(sandbox.messages()) == 10


def test_store_outage_fails_closed_and_recovers(sandbox: Sandbox, tmp_path: Path) -> None:
    azurite = Azurite(tmp_path).start()
    host = start_devhost(app_env(sandbox, azurite, STATE_STORE_COOLDOWN_SECONDS="2"))
    try:
        first = post(f"{host.url}/api/SendSms", {"to": VALID_TO, "body": "before"}, key="k0")
        assert first.status_code == 201
        azurite.stop()
        requests_before = len(sandbox.requests())
        for key in (None, "k1"):
            down = post(f"{host.url}/api/SendSms", {"to": VALID_TO, "body": "during"}, key=key)
            assert (down.status_code, down.headers["Retry-After"]) == (503, "5")
            assert down.json() == {
                "type": "urn:twilio-functions:problem:store-unavailable",
                "title": "State store unavailable",
                "status": 503,
                "detail": "The state store cannot be reached; nothing was sent. Try again shortly.",
            }
        assert len(sandbox.requests()) == requests_before  # Twilio was never asked
        azurite.start()
        # Within the cool-down the store is not even tried; then one request tries again.
        started = time.monotonic()
        while (
            again := post(f"{host.url}/api/SendSms", {"to": VALID_TO, "body": "during"}, key="k1")
        ).status_code == 503:
            assert time.monotonic() - started < 10, host.log()
            time.sleep(0.2)
        assert again.status_code == 201, host.log()
        assert len(sandbox.messages()) == 2
        kept = requests.get(f"{host.url}/api/messages/{first.json()['sid']}", timeout=10)
        assert (kept.status_code, kept.json()["sid"]) == (200, first.json()["sid"])
    finally:
        host.stop()
        azurite.stop()


def test_a_hung_store_is_a_quick_503_and_twiml_keeps_answering(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    azurite = Azurite(tmp_path).start()
    host = start_devhost(
        app_env(
            sandbox, azurite,
            STATE_STORE_READ_TIMEOUT_SECONDS="1", STATE_STORE_COOLDOWN_SECONDS="30",
            PYTHON_THREADPOOL_THREAD_COUNT="2",
        )
    )  # fmt: skip
    try:
        assert post(f"{host.url}/api/SendSms", {"to": VALID_TO, "body": "warm"}).status_code == 201
        assert azurite.process is not None
        azurite.process.send_signal(signal.SIGSTOP)  # paused: connections open, no answers
        with ThreadPoolExecutor(6) as pool:
            started = time.monotonic()
            sends = [
                pool.submit(post, f"{host.url}/api/SendSms", {"to": f"+1415555012{i}", "body": "x"})
                for i in range(6)
            ]
            time.sleep(0.2)  # the sends now hold both worker threads
            twiml_started = time.monotonic()
            twiml = requests.get(f"{host.url}/api/TwiML?message=hi", timeout=10)
            twiml_seconds = time.monotonic() - twiml_started
            statuses = [future.result().status_code for future in sends]
            sends_seconds = time.monotonic() - started
        assert twiml.status_code == 403  # unsigned: answered, which is what counts here
        assert twiml_seconds < 0.5, twiml_seconds
        assert statuses == [503] * 6
        # One read timeout (1 s) opened the breaker; the rest failed at once.
        assert sends_seconds < 3.0, sends_seconds
    finally:
        if azurite.process is not None:
            azurite.process.send_signal(signal.SIGCONT)
        host.stop()
        azurite.stop()


def stored(record: Any, current: Any) -> Any:
    return record


def test_the_cleanup_timer_runs_through_the_worker(sandbox: Sandbox, azurite: Azurite) -> None:
    # POST /admin/functions/Cleanup: the timer invoked through azure-functions-runtime with
    # the TimerInfo JSON the host sends, on the host's shared store.
    from shared.store import IdempotencyRecord
    from shared.table_store import TableStore

    env = app_env(sandbox, azurite)
    store = TableStore(azurite.connection_string, env["STATE_TABLE_PREFIX"])
    for key, expires_at in (("expired", 1.0), ("live", time.time() + 3600)):
        store.update_key(
            "scope", key, functools.partial(stored, IdempotencyRecord("f", expires_at, 0.0))
        )
    host = start_devhost(env)
    try:
        assert requests.post(f"{host.url}/admin/functions/cleanup", timeout=30).status_code == 202
        # It took a durable client: the stand-in answered its purge (nothing ended yet).
        assert "Cleanup deleted the Durable history of 0 ended orchestrations" in host.log()
        assert requests.post(f"{host.url}/admin/functions/Nope", timeout=30).status_code == 404
        # Only through the host's own name: not through a public name (a tunnel).
        foreign = {"Host": "example.ngrok.app"}
        answer = requests.post(f"{host.url}/admin/functions/Cleanup", headers=foreign, timeout=30)
        assert answer.status_code == 403
    finally:
        host.stop()
    assert [
        store.update_key("scope", k, lambda current: None).record is not None
        for k in ("expired", "live")
    ] == [
        False,
        True,
    ]
