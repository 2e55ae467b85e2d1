"""The Durable stand-in that `python -m devhost` runs: the app's real broadcast end to end
through the worker, the extension's HTTP API through the SDK's own client, and a host
killed with SIGKILL mid-broadcast that resumes from Azurite."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import requests

from devhost.durable import api
from devhost.durable.instances import Instance
from devhost.durable.replay import handle_for
from devhost.durable.standin import DurableStandIn
from devhost.durable.store import MemoryDurableStore
from devhost.rpc import messages as rpc
from devhost.worker import IndexedFunction, InProcessWorker, Invocation
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    VALID_FROM,
    Azurite,
    DevHost,
    Sandbox,
    start_devhost,
    table_prefix,
)

HUB = "TwilioFunctions"  # host.json durableTask.hubName


def numbers(count: int) -> list[str]:
    return [f"+1415555{i:04d}" for i in range(count)]


def wait_for[T](probe: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what} after {seconds} s")


def broadcast_status(host: DevHost, broadcast_id: str) -> dict[str, Any]:
    response = requests.get(f"{host.url}/api/broadcasts/{broadcast_id}?limit=100", timeout=10)
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def completed(host: DevHost, broadcast_id: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        status = broadcast_status(host, broadcast_id)
        return status if status["runtimeStatus"] == "Completed" else None

    return probe


def summary(status: dict[str, Any]) -> dict[str, Any]:
    return {k: status[k] for k in ("runtimeStatus", "total", "counts", "progress")}


ALL_SENT = {
    "runtimeStatus": "Completed",
    "total": 25,
    "counts": {"pending": 0, "sent": 25, "failed": 0, "canceled": 0, "notSent": 0, "unknown": 0},
    "progress": 1.0,
}


@pytest.fixture(scope="module")
def durable_host() -> Iterator[DevHost]:
    """devhost in sandbox mode, in-memory state, sending as fast as Twilio would take it."""
    host = start_devhost({"BROADCAST_MESSAGES_PER_SECOND": "1000"})
    yield host
    host.stop()


def test_a_broadcast_runs_end_to_end_on_the_stand_in(durable_host: DevHost) -> None:
    started = requests.post(
        f"{durable_host.url}/api/broadcasts", json={"to": numbers(25), "body": "Storm"}, timeout=10
    )
    assert started.status_code == 202, durable_host.log()[-3000:]
    broadcast_id = started.json()["id"]
    status = wait_for(completed(durable_host, broadcast_id), 60, "the broadcast to complete")
    assert summary(status) == ALL_SENT
    assert [(r["index"], r["status"]) for r in status["results"]] == [
        (i, "sent") for i in range(25)
    ]
    messages = durable_host.sandbox.messages()
    assert sorted(m["to"] for m in messages) == numbers(25)


def test_the_extension_api_answers_the_sdks_client(durable_host: DevHost) -> None:
    from azure.durable_functions import DurableOrchestrationClient
    from azure.durable_functions.models.utils import http_utils

    binding = api.client_binding(durable_host.url, durable_host.durable, HUB, "key")
    client = DurableOrchestrationClient(binding)
    # A chunk that cannot run (parallelism 0) fails, and its parent waits 60 s to retry
    # it: the parent's id stays taken while the test runs.
    stuck = {
        "id": "b-none", "total": 1, "chunks": 1, "next_chunk": 0,
        "counts": {"sent": 0, "failed": 0, "canceled": 0}, "chunk_size": 1, "parallelism": 0, "mps": 1.0,
    }  # fmt: skip

    async def status_when(instance_id: str, runtime: str) -> Any:
        for _ in range(100):
            status = await client.get_status(instance_id)
            if status.runtime_status is not None and status.runtime_status.name == runtime:
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"{instance_id} never became {runtime}")

    async def scenario() -> list[Any]:
        answers: list[Any] = [await client.start_new("broadcast_orchestrator", "p1", stuck)]
        for call in (
            client.start_new("broadcast_orchestrator", "p1", stuck),
            client.start_new("no_such_orchestrator"),
            client.terminate("missing", "why"),
        ):
            try:
                await call
            except Exception as exc:
                answers.append(str(exc))
        await client.terminate("p1", "enough")
        status = await status_when("p1", "Terminated")
        answers.append((status.name, status.output))
        answers.append((await client.get_status("missing")).runtime_status)
        await http_utils._close_session()  # the SDK keeps one session per process
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == "p1"
    assert "An Orchestration instance with the status Running already exists." in answers[1]
    assert answers[2].startswith(
        "The function 'no_such_orchestrator' doesn't exist, is disabled, or is not an "
        "orchestrator function. Additional info: The following are the known orchestrator "
        "functions: 'broadcast_orchestrator', 'broadcast_chunk_orchestrator'."
    )
    assert answers[3:] == [
        "No instance with ID 'missing' found.",
        ("broadcast_orchestrator", "enough"),
        None,
    ]


def kill_9(host: DevHost) -> None:
    """What a crash or an OOM kill does: no finally blocks, no goodbye to storage."""
    host.process.send_signal(signal.SIGKILL)
    host.process.wait(10)
    host.drain.join(10)
    assert host.process.stdout is not None
    host.process.stdout.close()


def test_a_broadcast_resumes_after_the_host_is_killed(azurite: Azurite, sandbox: Sandbox) -> None:
    # Twilio stand-in outside the host, so that it outlives it; state and instances on
    # Azurite. Chunks of 10 sent 5 at a time, a group every 2 s: 25 recipients take ~10 s.
    env = {
        "STATE_STORE_CONNECTION": azurite.connection_string, "STATE_TABLE_PREFIX": table_prefix(),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": sandbox.url, "TWILIO_FROM_NUMBER": VALID_FROM,
        "BROADCAST_CHUNK_SIZE": "10", "BROADCAST_PARALLELISM": "5",
        "BROADCAST_MESSAGES_PER_SECOND": "2.5",
    }  # fmt: skip
    first = start_devhost(env)
    try:
        started = requests.post(
            f"{first.url}/api/broadcasts", json={"to": numbers(25), "body": "Storm"}, timeout=10
        )
        assert started.status_code == 202, first.log()[-3000:]
        broadcast_id = started.json()["id"]
        # Kill it once the first chunk's two groups are sent and recorded: the chunk is
        # waiting on its pacing timer, nothing is on its way to Twilio.
        wait_for(
            lambda: len(broadcast_status(first, broadcast_id)["results"]) == 10,
            30,
            "the first 10 results",
        )
    finally:
        kill_9(first)
    assert len(sandbox.messages()) == 10

    second = start_devhost(env)
    try:
        status = wait_for(completed(second, broadcast_id), 60, "the broadcast to complete")
        assert "resuming" in second.log()
    finally:
        second.stop()
        first.log_path.unlink(missing_ok=True)
    assert summary(status) == ALL_SENT
    assert sorted(m["to"] for m in sandbox.messages()) == numbers(25)  # each exactly once


# Recovery, without a worker process ---------------------------------------------------------


class ScriptedWorker:
    """Answers invocations as azure-functions-runtime does (orchestrators through the SDK's
    handle, activities as JSON), for functions given as Python callables."""

    def __init__(self, orchestrators: dict[str, Any], activities: dict[str, Any]) -> None:
        self.orchestrators, self.activities = orchestrators, activities
        self.calls: list[str] = []

    def functions(self) -> list[IndexedFunction]:
        def indexed(name: str, trigger: str) -> IndexedFunction:
            binding = {"type": trigger, "name": "arg", "direction": "in"}
            return IndexedFunction(name, name, (binding,))

        return [indexed(n, "orchestrationTrigger") for n in self.orchestrators] + [
            indexed(n, "activityTrigger") for n in self.activities
        ]

    async def invoke(
        self, function: IndexedFunction, inputs: Mapping[str, Any], **_: Any
    ) -> Invocation:
        from azure.functions import OrchestrationContext

        self.calls.append(function.name)
        text = inputs["arg"].string
        if function.name in self.orchestrators:
            try:
                state = self.orchestrators[function.name](OrchestrationContext(text))
            except Exception as exc:
                return Invocation(succeeded=False, error=f"Exception: {exc}")
            return Invocation(succeeded=True, return_value=rpc.TypedData(json=state))
        result = await self.activities[function.name](json.loads(text))
        return Invocation(succeeded=True, return_value=rpc.TypedData(json=json.dumps(result)))


def test_an_activity_in_flight_when_the_host_died_runs_again() -> None:
    def orchestrator(context: Any) -> Generator[Any, Any, Any]:
        return (yield context.call_activity("work", context.get_input()))

    never = asyncio.Event()
    runs: list[Any] = []

    async def work(value: Any) -> Any:
        runs.append(value)
        if len(runs) == 1:
            await never.wait()  # the first host dies while this runs
        return {"done": value}

    worker = ScriptedWorker({"o": handle_for(orchestrator)}, {"work": work})
    store = MemoryDurableStore()

    async def scenario() -> Instance:
        first = DurableStandIn(
            cast(InProcessWorker, worker), worker.functions(), store, task_hub=HUB
        )
        await first.start()
        assert await first.create("o", "i1", '"x"')
        while len(runs) < 1:
            await asyncio.sleep(0.01)
        await first.close()  # gone, with the activity half done and nothing recorded
        second = DurableStandIn(
            cast(InProcessWorker, worker), worker.functions(), store, task_hub=HUB
        )
        await second.start()  # recover(): the scheduled task has no result: run it again
        for _ in range(200):
            found = await second.get("i1")
            if found is not None and found.status == "Completed":
                break
            await asyncio.sleep(0.01)
        await second.close()
        assert found is not None
        return found

    instance = asyncio.run(scenario())
    assert (instance.status, instance.output, runs) == ("Completed", {"done": "x"}, ["x", "x"])
    assert worker.calls == ["o", "work", "work", "o"]


# Purging history, through the SDK's own client -----------------------------------------------


@pytest.mark.parametrize("kept_in", ["memory", "tables"])
def test_purge_instance_history_by_reaches_the_stand_in_as_on_azure(
    kept_in: str, request: pytest.FixtureRequest
) -> None:
    from azure.durable_functions import DurableOrchestrationClient
    from azure.durable_functions.models.OrchestrationRuntimeStatus import (
        OrchestrationRuntimeStatus as Status,
    )
    from azure.durable_functions.models.utils import http_utils

    from devhost.durable.store import DurableStore
    from devhost.durable.table_store import TableDurableStore
    from tests.test_durable_store import stored

    store: DurableStore = MemoryDurableStore()
    if kept_in == "tables":
        azurite: Azurite = request.getfixturevalue("azurite")
        store = TableDurableStore(azurite.connection_string, f"{table_prefix()}Durable")
    day = timedelta(days=1)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    stored(store, "done", "Completed", start, waiting=False)
    stored(store, "failed", "Failed", start + day, waiting=False)
    stored(store, "terminated", "Terminated", start + 2 * day, waiting=False)
    stored(store, "running", "Running", start, waiting=False)
    stored(store, "recent", "Completed", start + 10 * day, waiting=False)
    ended = [Status.Completed, Status.Failed, Status.Terminated]
    # Nothing waits in an inbox: the stand-in has nothing to run (no orchestrator "o").
    worker = ScriptedWorker({}, {})

    async def scenario() -> list[Any]:
        standin = DurableStandIn(
            cast(InProcessWorker, worker), worker.functions(), store, task_hub=HUB
        )
        await standin.start()
        client = DurableOrchestrationClient(standin.client_binding("http://127.0.0.1:1"))
        answers: list[Any] = []
        try:
            first = await client.purge_instance_history_by(start, start + 5 * day, ended)
            again = await client.purge_instance_history_by(start, start + 5 * day, ended)  # 404
            answers += [first.instances_deleted, again.instances_deleted]
            ids = ("done", "failed", "terminated", "running", "recent")
            answers.append([i for i in ids if await standin.get(i) is not None])
            base = standin.rpc_base_url
            # createdTimeFrom is required: the extension answers 400, the SDK raises.
            session = await http_utils._get_session()
            async with session.delete(f"{base}instances/") as response:
                answers.append((response.status, await response.json()))
            # No terminal status named: no status condition at all, running ones go too.
            async with session.delete(
                f"{base}instances/?createdTimeFrom=2026-03-01T00:00:00.000000Z"
                "&createdTimeTo=2026-03-01T00:00:00.000000Z&runtimeStatus=Running"
            ) as response:
                answers.append((response.status, await response.json()))
        finally:
            await http_utils._close_session()
            await standin.close()
        return answers

    assert asyncio.run(scenario()) == [
        3,
        0,
        ["running", "recent"],
        (400, "Please provide value for 'createdTimeFrom' parameter."),
        (200, {"instancesDeleted": 1}),
    ]
