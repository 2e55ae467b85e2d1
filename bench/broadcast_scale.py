"""Broadcast orchestration cost through the real replay: our chunked design against a
single flat fan-out, on the replay framework the tests use (devhost/durable/).

Every episode hands the orchestrator its whole history, which the SDK parses and replays
from the start; `replay work` is the number of history events handed over, summed over
every episode of every instance, and `SDK µs / event` what that cost here. Activities
take ACTIVITY_SECONDS of virtual time, at most host.json's maxConcurrentActivityFunctions
at once, so completions reach an instance in waves, as they do in Azure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from devhost.durable.framework import EPOCH, DurableFramework
from devhost.durable.replay import handle_for
from shared import broadcast_orchestration as orchestration

ROOT = Path(__file__).resolve().parent.parent
CHUNKED_SIZES = (1_000, 10_000)
FLAT_SIZES = (500, 1_000)  # the flat design's replays grow quadratically: kept small
CHUNK_SIZE = 100
ACTIVITY_SECONDS = 0.2
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


def _framework(total: int) -> DurableFramework:
    def load(job: dict[str, Any]) -> list[list[Any]]:
        first = job["chunk"] * job["chunk_size"]
        return [[i, f"+1{i:010d}"] for i in range(first, min(first + job["chunk_size"], total))]

    host = json.loads((ROOT / "host.json").read_text())["extensions"]["durableTask"]
    return DurableFramework(
        {
            orchestration.BROADCAST_ORCHESTRATOR: handle_for(orchestration.broadcast),
            orchestration.CHUNK_ORCHESTRATOR: handle_for(orchestration.broadcast_chunk),
            FLAT: handle_for(flat_fan_out),
        },
        {
            orchestration.LOAD_CHUNK_ACTIVITY: load,
            orchestration.SEND_ACTIVITY: lambda _: {"status": "sent"},
            orchestration.SETTLE_CHUNK_ACTIVITY: lambda _: {},
        },
        activity_seconds=ACTIVITY_SECONDS,
        max_concurrent_activities=int(host["maxConcurrentActivityFunctions"]),
    )


def _measure(total: int, design: str) -> dict[str, Any]:
    durable = _framework(total)
    start = time.perf_counter()
    if design == FLAT:
        counts = durable.run_orchestration(FLAT, {"id": "b", "chunk_size": total})
    else:
        state = {
            "id": "b", "total": total, "chunks": -(-total // CHUNK_SIZE), "next_chunk": 0,
            "counts": dict.fromkeys(orchestration.OUTCOMES, 0),
            "chunk_size": CHUNK_SIZE, "parallelism": 10, "mps": 1e9,
        }  # fmt: skip
        counts = durable.run_orchestration(orchestration.BROADCAST_ORCHESTRATOR, state)
    seconds = time.perf_counter() - start
    if counts["sent"] != total:
        raise RuntimeError(f"{design} sent {counts['sent']} of {total}")
    runs = durable.executions
    replayed = sum(r.replayed_events for r in runs)
    return {
        "executions": len(runs),
        "episodes": sum(r.episodes for r in runs),
        "replay_work": replayed,
        "max_history_events": max(r.history_events for r in runs),
        "max_actions": max(r.activities + r.sub_orchestrations + len(r.timers) for r in runs),
        "max_episode_events": max(r.replayed_events // max(r.episodes, 1) for r in runs),
        "virtual_seconds": (durable.now - EPOCH).total_seconds(),
        "harness_seconds": seconds,
        "us_per_event": seconds / replayed * 1e6,
    }


def run() -> dict[str, dict[int, dict[str, Any]]]:
    return {
        "chunked": {total: _measure(total, "chunked") for total in CHUNKED_SIZES},
        "flat": {total: _measure(total, FLAT) for total in FLAT_SIZES},
    }
