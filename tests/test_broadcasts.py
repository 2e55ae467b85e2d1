"""Broadcasts: orchestrators driven through a fake Durable runtime, the starter and status
functions through `__wrapped__` with a fake durable client, activities against the sandbox."""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests

from shared import broadcast_orchestration as orchestration
from shared.broadcasts import TransientSendError
from shared.settings import get_settings
from shared.state import get_store
from tests.conftest import PUBLIC_BASE_URL, ROOT, DevHost, Sandbox, SetEnv, body_of, build_request
from tests.durable_fakes import FakeDurable, FakeDurableClient, FakeStatus

URL = f"{PUBLIC_BASE_URL}/api/broadcasts"


@pytest.fixture
def fns(indexed: list[Any], app_env: SetEnv) -> dict[str, Any]:
    return {f.get_function_name(): f.get_user_function() for f in indexed}


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+1415555{i:04d}" for i in range(start, start + count)]


def start(
    fns: dict[str, Any], client: FakeDurableClient, payload: Any, **headers: str
) -> func.HttpResponse:
    request = build_request("POST", URL, json_body=payload, headers=headers)
    response: func.HttpResponse = asyncio.run(
        fns["StartBroadcast"].__wrapped__(req=request, client=client)
    )
    return response


def view(
    fns: dict[str, Any],
    client: FakeDurableClient,
    broadcast_id: str,
    query: str = "",
    method: str = "GET",
) -> func.HttpResponse:
    request = build_request(
        method, f"{URL}/{broadcast_id}{query}", route_params={"id": broadcast_id}
    )
    response: func.HttpResponse = asyncio.run(
        fns["Broadcast"].__wrapped__(req=request, client=client)
    )
    return response


def runtime(
    fns: dict[str, Any], activities: dict[str, Callable[[Any], Any]] | None = None
) -> FakeDurable:
    return FakeDurable(
        orchestrators={
            orchestration.BROADCAST_ORCHESTRATOR: fns[orchestration.BROADCAST_ORCHESTRATOR].orchestrator_function,
            orchestration.CHUNK_ORCHESTRATOR: fns[orchestration.CHUNK_ORCHESTRATOR].orchestrator_function,
        },
        activities=activities or {
            name: fns[name]
            for name in (orchestration.LOAD_CHUNK_ACTIVITY, orchestration.SEND_ACTIVITY, orchestration.SETTLE_CHUNK_ACTIVITY)
        },
    )  # fmt: skip


def started_input(client: FakeDurableClient) -> Any:
    [(name, _, orchestration_input)] = client.started
    assert name == orchestration.BROADCAST_ORCHESTRATOR
    return orchestration_input


# Starting ------------------------------------------------------------------------------


def test_start_answers_202_with_our_urls_only(fns: dict[str, Any]) -> None:
    client = FakeDurableClient()
    response = start(
        fns, client, {"to": [*numbers(3), numbers(1)[0], "12", "+442079460000"], "body": "Alert"}
    )
    body = body_of(response)
    [(_, instance_id, orchestration_input)] = client.started
    assert response.status_code == 202
    assert response.headers["Location"] == f"{PUBLIC_BASE_URL}/api/broadcasts/{instance_id}"
    assert body == {
        "id": instance_id,
        "statusUrl": f"{PUBLIC_BASE_URL}/api/broadcasts/{instance_id}",
        "accepted": 3,  # the duplicate is dropped
        "rejected": [
            {"to": "12", "error": "must be in E.164 format, e.g. +14155550100"},
            {
                "to": "+442079460000",
                "error": "Destination country GB is not allowed (allowed: US).",
            },
        ],
        "replayed": False,
    }
    # Never the extension's management URLs: they carry the Durable system key.
    text = response.get_body().decode() + json.dumps(dict(response.headers))
    for leak in (
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
        "code=",
        "runtime/webhooks",
    ):
        assert leak not in text
    assert orchestration_input == {
        "id": instance_id, "total": 3, "chunks": 1, "next_chunk": 0,
        "counts": {"sent": 0, "failed": 0, "canceled": 0},
        "chunk_size": 100, "parallelism": 10, "mps": 10.0,
    }  # fmt: skip


def test_idempotent_repeat_answers_the_existing_broadcast(fns: dict[str, Any]) -> None:
    client = FakeDurableClient()
    payload = {"to": numbers(2), "body": "Alert"}
    first = body_of(start(fns, client, payload, **{"Idempotency-Key": "storm-1"}))
    again = start(fns, client, payload, **{"Idempotency-Key": "storm-1"})
    assert (again.status_code, body_of(again)["id"], body_of(again)["replayed"]) == (
        202,
        first["id"],
        True,
    )
    assert len(client.started) == 1
    other = start(fns, client, {**payload, "body": "Other"}, **{"Idempotency-Key": "storm-1"})
    assert (other.status_code, body_of(other)["title"]) == (422, "Idempotency-Key reused")


def test_duplicate_instance_from_a_race_is_not_a_500(fns: dict[str, Any]) -> None:
    client = FakeDurableClient()
    client.start_error = Exception("An instance with ID 'b1' already exists.")
    response = start(fns, client, {"to": numbers(1), "body": "x"}, **{"Idempotency-Key": "k"})
    assert (response.status_code, body_of(response)["replayed"]) == (202, True)


def test_extension_failure_is_a_503_problem(fns: dict[str, Any]) -> None:
    client = FakeDurableClient()
    client.start_error = Exception("boom")
    response = start(fns, client, {"to": numbers(1), "body": "x"})
    assert (response.status_code, body_of(response)["detail"]) == (
        503,
        "The broadcast could not be started; try again.",
    )


def test_quota_is_charged_for_the_whole_broadcast_up_front(
    fns: dict[str, Any], app_env: SetEnv
) -> None:
    app_env(LIMIT_GLOBAL="5/day")
    client = FakeDurableClient()
    response = start(fns, client, {"to": numbers(6), "body": "x"})
    assert (response.status_code, body_of(response)["limit"]) == (429, "global")
    assert client.started == []
    assert body_of(start(fns, client, {"to": numbers(5), "body": "x"}))["accepted"] == 5


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"to": [], "body": "x"}, [{"field": "to", "message": "must not be empty"}]),
        ({"to": "+14155550100", "body": "x"}, [{"field": "to", "message": "must be a list"}]),
        ({"to": numbers(11), "body": "x"}, [{"field": "to", "message": "must have at most 10 numbers"}]),
        ({"to": numbers(1)}, [{"field": "body", "message": "is required"}]),
        ({"to": ["nope", "+1"], "body": "x"}, [{"field": "to", "message": "has no number that may be sent to"}]),
    ],
)  # fmt: skip
def test_bad_requests(
    fns: dict[str, Any], app_env: SetEnv, payload: Any, errors: list[dict[str, str]]
) -> None:
    app_env(BROADCAST_MAX_RECIPIENTS="10")
    client = FakeDurableClient()
    response = start(fns, client, payload)
    assert (response.status_code, body_of(response)["errors"]) == (400, errors)
    assert client.started == []


# Running -------------------------------------------------------------------------------


def test_a_broadcast_runs_in_paced_chunks_and_aggregates_results(
    fns: dict[str, Any], app_env: SetEnv, sandbox: Sandbox
) -> None:
    app_env(BROADCAST_CHUNK_SIZE="10", BROADCAST_PARALLELISM="4", BROADCAST_MESSAGES_PER_SECOND="2")
    client = FakeDurableClient()
    recipients = [*numbers(22), "+15005550001", "+15005550004", "+15005550009"]  # 3 Twilio refusals
    body = body_of(start(fns, client, {"to": recipients, "body": "Storm warning"}))
    durable = runtime(fns)
    counts = durable.run(orchestration.BROADCAST_ORCHESTRATOR, started_input(client))

    assert counts == {"sent": 22, "failed": 3, "canceled": 0}
    assert len(sandbox.messages()) == 22
    parent, *chunks = durable.executions
    assert (parent.sub_orchestrations, len(chunks)) == (3, 3)
    assert [chunk.activities for chunk in chunks] == [11, 11, 6]  # load + one send each
    assert parent.custom_status == {
        "total": 25, "processed": 25, "sent": 22, "failed": 3, "canceled": 0, "chunksDone": 3, "chunks": 3,
    }  # fmt: skip
    # Groups of 4, 4 and 2 at 2 messages a second: each next group starts 2 s, 2 s, 1 s later.
    timers = chunks[0].timers
    assert [(t - timers[0]).total_seconds() for t in timers] == [0.0, 2.0, 3.0]

    client.statuses[body["id"]] = FakeStatus("Completed", parent.custom_status)
    status = body_of(view(fns, client, body["id"], "?offset=20&limit=10"))
    assert {k: status[k] for k in ("runtimeStatus", "total", "counts", "progress")} == {
        "runtimeStatus": "Completed",
        "total": 25,
        "counts": {"pending": 0, "sent": 22, "failed": 3, "canceled": 0},
        "progress": 1.0,
    }
    assert [(r["index"], r["status"], r.get("errorCode")) for r in status["results"]] == [
        (20, "sent", None), (21, "sent", None),
        (22, "failed", 21211), (23, "failed", 21610), (24, "failed", 21614),
    ]  # fmt: skip


def test_transient_errors_are_retried_and_permanent_ones_are_results(
    fns: dict[str, Any], sandbox: Sandbox
) -> None:
    client = FakeDurableClient()
    start(fns, client, {"to": ["+15005550428", "+15005550001"], "body": "x"})  # 429 once; invalid
    counts = runtime(fns).run(orchestration.BROADCAST_ORCHESTRATOR, started_input(client))
    assert counts == {"sent": 1, "failed": 1, "canceled": 0}
    assert len(sandbox.messages()) == 1


def test_a_chunk_that_keeps_failing_is_settled_not_lost(
    fns: dict[str, Any], app_env: SetEnv, sandbox: Sandbox
) -> None:
    # Every attempt is charged to the destination's limit; lift it to reach the give-up path.
    app_env(TWILIO_RATE_LIMIT_RETRIES="0", LIMIT_PER_DESTINATION="off")
    client = FakeDurableClient()
    body = body_of(
        start(fns, client, {"to": [*numbers(2), "+15005550500"], "body": "x"})
    )  # 500 always
    durable = runtime(fns)
    counts = durable.run(orchestration.BROADCAST_ORCHESTRATOR, started_input(client))
    assert counts == {"sent": 2, "failed": 1, "canceled": 0}
    # Three chunk attempts, each sending only what was not sent yet.
    assert len(sandbox.messages()) == 2
    assert [name for name, _ in durable.activity_calls].count(
        orchestration.SETTLE_CHUNK_ACTIVITY
    ) == 1
    results = get_store(get_settings()).recipient_results(body["id"], 0, 10)
    assert results[2] == {
        "index": 2,
        "to": "+15005550500",
        "status": "failed",
        "error": "Twilio kept failing",
    }


def test_cancel_stops_every_send_not_yet_made(fns: dict[str, Any], sandbox: Sandbox) -> None:
    client = FakeDurableClient()
    body = body_of(start(fns, client, {"to": numbers(5), "body": "x"}))
    response = view(fns, client, body["id"], method="DELETE")
    assert (response.status_code, body_of(response)) == (202, {"id": body["id"], "cancelled": True})
    assert client.terminated == [body["id"]]
    counts = runtime(fns).run(orchestration.BROADCAST_ORCHESTRATOR, started_input(client))
    assert counts == {"sent": 0, "failed": 0, "canceled": 5}
    assert sandbox.messages() == []


def test_status_of_unknown_broadcast_and_bad_paging(fns: dict[str, Any]) -> None:
    client = FakeDurableClient()
    assert view(fns, client, "b-none").status_code == 404
    assert view(fns, client, "b-none", method="DELETE").status_code == 404
    body = body_of(start(fns, client, {"to": numbers(1), "body": "x"}))
    response = view(fns, client, body["id"], "?limit=0")
    assert (response.status_code, body_of(response)["detail"]) == (
        400,
        "offset must be ≥ 0 and limit 1 to 1000.",
    )
    pending = body_of(view(fns, client, body["id"]))
    assert (pending["runtimeStatus"], pending["counts"]["pending"], pending["results"]) == (
        "Running",
        1,
        [],
    )


# Activities ------------------------------------------------------------------------------


def test_send_activity_never_sends_twice(fns: dict[str, Any], sandbox: Sandbox) -> None:
    client = FakeDurableClient()
    body = body_of(start(fns, client, {"to": numbers(1), "body": "x"}))
    payload = {"id": body["id"], "index": 0, "to": numbers(1)[0]}
    first = fns[orchestration.SEND_ACTIVITY](payload)
    again = fns[orchestration.SEND_ACTIVITY](payload)  # a replayed or retried activity
    assert first == again
    assert (first["status"], len(sandbox.messages())) == ("sent", 1)


def test_send_activity_raises_on_transient_errors_and_can_be_retried(
    fns: dict[str, Any], sandbox: Sandbox
) -> None:
    client = FakeDurableClient()
    body = body_of(start(fns, client, {"to": ["+15005550429"], "body": "x"}))
    payload = {"id": body["id"], "index": 0, "to": "+15005550429"}
    with pytest.raises(TransientSendError):
        fns[orchestration.SEND_ACTIVITY](payload)
    with pytest.raises(TransientSendError):  # the key was released: a retry tries again
        fns[orchestration.SEND_ACTIVITY](payload)
    assert len(sandbox.requests()) == 6  # 3 tries each (TWILIO_RATE_LIMIT_RETRIES=2)


# Bounds and determinism ------------------------------------------------------------------


def counting_runtime(fns: dict[str, Any]) -> FakeDurable:
    def load(job: Any) -> list[list[Any]]:
        first = job["chunk"] * job["chunk_size"]
        total = 10_000
        return [[i, f"+1{i:010d}"] for i in range(first, min(first + job["chunk_size"], total))]

    durable = runtime(
        fns,
        {
            orchestration.LOAD_CHUNK_ACTIVITY: load,
            orchestration.SEND_ACTIVITY: lambda _: {"status": "sent"},
        },
    )
    durable.activity_seconds = 0
    return durable


def test_ten_thousand_recipients_stay_within_bounds(fns: dict[str, Any]) -> None:
    durable = counting_runtime(fns)
    state = {
        "id": "b", "total": 10_000, "chunks": 100, "next_chunk": 0,
        "counts": {"sent": 0, "failed": 0, "canceled": 0}, "chunk_size": 100, "parallelism": 10, "mps": 1000.0,
    }  # fmt: skip
    assert durable.run(orchestration.BROADCAST_ORCHESTRATOR, state) == {
        "sent": 10_000,
        "failed": 0,
        "canceled": 0,
    }
    parents = [
        e for e in durable.executions if e.orchestrator == orchestration.BROADCAST_ORCHESTRATOR
    ]
    chunks = [e for e in durable.executions if e.orchestrator == orchestration.CHUNK_ORCHESTRATOR]
    assert (len(parents), len(chunks)) == (10, 100)  # 10 generations (continue_as_new), 100 chunks
    assert max(e.activities + e.sub_orchestrations for e in durable.executions) == 101
    assert max(p.sub_orchestrations for p in parents) == orchestration.CHUNKS_PER_GENERATION


FORBIDDEN_CALLS = {
    "now",
    "utcnow",
    "today",
    "time",
    "uuid1",
    "uuid4",
    "sleep",
    "open",
    "urlopen",
    "getenv",
}
FORBIDDEN_MODULES = {
    "time",
    "uuid",
    "random",
    "secrets",
    "os",
    "socket",
    "requests",
    "aiohttp",
    "twilio",
    "shared.store",
    "shared.state",
    "shared.memory_store",
    "shared.table_store",
    "shared.clock",
}


def nondeterminism(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                a.name
                for a in node.names
                if a.name.split(".")[0] in FORBIDDEN_MODULES or a.name in FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES or node.module in FORBIDDEN_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call):
            name = (
                node.func.attr
                if isinstance(node.func, ast.Attribute)
                else getattr(node.func, "id", "")
            )
            if name in FORBIDDEN_CALLS:
                found.append(f"{name}()")
        elif isinstance(node, ast.Attribute) and node.attr == "environ":
            found.append("environ")
    return found


def test_orchestrators_are_deterministic() -> None:
    for path in (ROOT / "shared" / "broadcast_orchestration.py",):
        assert nondeterminism(Path(path).read_text()) == []


@pytest.mark.parametrize(
    "bad",
    [
        "from datetime import datetime\nx = datetime.now()",
        "import time\nx = time.time()",
        "import uuid\nx = uuid.uuid4()",
        "import random",
        "from shared.state import get_store",
        "import os\nx = os.environ['A']",
    ],
)
def test_the_determinism_check_catches_what_it_should(bad: str) -> None:
    assert nondeterminism(bad) != []


def test_local_host_answers_501_for_durable_routes(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/broadcasts", json={"to": ["+14155550100"], "body": "x"}, timeout=10
    )
    assert response.status_code == 501
    assert response.json()["type"] == "urn:twilio-functions:problem:needs-functions-host"


def test_replay_work_is_counted_as_the_runtime_replays() -> None:
    def flat(context: Any) -> Any:
        recipients = yield context.call_activity("load", None)
        return (yield context.task_all([context.call_activity("send", to) for to in recipients]))

    durable = FakeDurable(
        orchestrators={"flat": flat},
        activities={"load": lambda _: ["a", "b", "c"], "send": lambda to: to},
    )
    assert durable.run("flat", None) == ["a", "b", "c"]
    [execution] = durable.executions
    # load's completion replays 1 action; each send's replays all 4 created before task_all.
    assert (execution.actions, execution.replay_work, execution.history_events) == (
        4,
        1 + 3 * 4,
        10,
    )
