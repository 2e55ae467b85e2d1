"""Broadcast orchestration cost at 1,000 / 10,000 / 100,000 recipients: our chunked
design against a single flat fan-out, counted by the fake Durable runtime the tests use
(replay work: actions re-created on every replay; history events per instance)."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from shared import broadcast_orchestration as orchestration
from tests.durable_fakes import FakeDurable

SIZES = (1_000, 10_000, 100_000)
CHUNK_SIZE = 100
FLAT = "flat_fan_out"


def flat_fan_out(context: Any) -> Generator[Any, Any, Any]:
    """The naive design: one instance schedules a send for every recipient at once."""
    job = context.get_input()
    recipients = yield context.call_activity(orchestration.LOAD_CHUNK_ACTIVITY, {**job, "chunk": 0})
    sends = [
        context.call_activity(orchestration.SEND_ACTIVITY, {"index": i, "to": to})
        for i, to in recipients
    ]
    return orchestration.tally((yield context.task_all(sends)))


def _runtime(total: int) -> FakeDurable:
    def load(job: dict[str, Any]) -> list[list[Any]]:
        first = job["chunk"] * job["chunk_size"]
        return [[i, f"+1{i:010d}"] for i in range(first, min(first + job["chunk_size"], total))]

    durable = FakeDurable(
        orchestrators={
            orchestration.BROADCAST_ORCHESTRATOR: orchestration.broadcast,
            orchestration.CHUNK_ORCHESTRATOR: orchestration.broadcast_chunk,
            FLAT: flat_fan_out,
        },
        activities={
            orchestration.LOAD_CHUNK_ACTIVITY: load,
            orchestration.SEND_ACTIVITY: lambda _: {"status": "sent"},
        },
    )
    durable.activity_seconds = 0.0
    return durable


def _measure(total: int, design: str) -> dict[str, Any]:
    durable = _runtime(total)
    start = time.perf_counter()
    if design == FLAT:
        counts = durable.run(FLAT, {"id": "b", "chunk_size": total})
    else:
        state = {
            "id": "b", "total": total, "chunks": -(-total // CHUNK_SIZE), "next_chunk": 0,
            "counts": dict.fromkeys(orchestration.OUTCOMES, 0),
            "chunk_size": CHUNK_SIZE, "parallelism": 10, "mps": 1e9,
        }  # fmt: skip
        counts = durable.run(orchestration.BROADCAST_ORCHESTRATOR, state)
    if counts["sent"] != total:
        raise RuntimeError(f"{design} sent {counts['sent']} of {total}")
    return {
        "executions": len(durable.executions),
        "replay_work": sum(e.replay_work for e in durable.executions),
        "max_history_events": max(e.history_events for e in durable.executions),
        "max_actions": max(e.actions for e in durable.executions),
        "harness_seconds": time.perf_counter() - start,
    }


def run() -> dict[int, dict[str, dict[str, Any]]]:
    return {
        total: {"chunked": _measure(total, "chunked"), "flat": _measure(total, FLAT)}
        for total in SIZES
    }
