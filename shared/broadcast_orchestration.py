"""The broadcast orchestrators: deterministic generators, all I/O in activities.

Replay re-runs these from the start, so they read time only from the context, never
call anything that does I/O, and keep every instance's history bounded: a broadcast is
split into chunks, each chunk is its own sub-orchestration (at most chunk_size + 1
activities), and the parent handles CHUNKS_PER_GENERATION chunks before continue_as_new
starts it over with a fresh history. tests/test_broadcasts.py enforces this.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

BROADCAST_ORCHESTRATOR = "broadcast_orchestrator"
CHUNK_ORCHESTRATOR = "broadcast_chunk_orchestrator"
LOAD_CHUNK_ACTIVITY = "broadcast_load_chunk"
SEND_ACTIVITY = "broadcast_send"
SETTLE_CHUNK_ACTIVITY = "broadcast_settle_chunk"
CHUNKS_PER_GENERATION = 10
# RetryOptions has no backoff coefficient: quick retries for a send, and a slow retry of
# the whole chunk (whose sends already made are replayed, not repeated) for longer trouble.
SEND_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=3)
CHUNK_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=3)
OUTCOMES = ("sent", "failed", "canceled")

Orchestration = Generator[Any, Any, Any]


def broadcast(context: df.DurableOrchestrationContext) -> Orchestration:
    """Input: {id, total, chunks, next_chunk, counts, chunk_size, parallelism, mps}."""
    state: dict[str, Any] = context.get_input()
    counts = dict(state["counts"])
    first = state["next_chunk"]
    last = min(first + CHUNKS_PER_GENERATION, state["chunks"])
    for chunk in range(first, last):
        job = {key: state[key] for key in ("id", "chunk_size", "parallelism", "mps")} | {
            "chunk": chunk
        }
        try:
            result = yield context.call_sub_orchestrator_with_retry(
                CHUNK_ORCHESTRATOR, CHUNK_RETRY, job
            )
        except Exception:
            # The chunk kept failing (Twilio down for minutes): record what is missing.
            result = yield context.call_activity(SETTLE_CHUNK_ACTIVITY, job)
        counts = add_counts(counts, result)
        context.set_custom_status(progress(state["total"], counts, chunk + 1, state["chunks"]))
    if last < state["chunks"]:
        context.continue_as_new({**state, "next_chunk": last, "counts": counts})
        return None
    return counts


def broadcast_chunk(context: df.DurableOrchestrationContext) -> Orchestration:
    """Input: {id, chunk, chunk_size, parallelism, mps}; returns the chunk's counts."""
    job: dict[str, Any] = context.get_input()
    recipients: list[list[Any]] = yield context.call_activity(LOAD_CHUNK_ACTIVITY, job)
    counts = dict.fromkeys(OUTCOMES, 0)
    for start in range(0, len(recipients), job["parallelism"]):
        group = recipients[start : start + job["parallelism"]]
        began = context.current_utc_datetime
        sends = [
            context.call_activity_with_retry(
                SEND_ACTIVITY, SEND_RETRY, {"id": job["id"], "index": index, "to": to}
            )
            for index, to in group
        ]
        results = yield context.task_all(sends)
        counts = add_counts(counts, tally(results))
        # Pace with a durable timer (never sleep): at most `mps` messages a second.
        next_group_at = began + timedelta(seconds=len(group) / job["mps"])
        if context.current_utc_datetime < next_group_at:
            yield context.create_timer(next_group_at)
    return counts


def tally(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        outcome = result.get("status")
        counts[
            "sent" if outcome == "sent" else "canceled" if outcome == "canceled" else "failed"
        ] += 1
    return counts


def add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {outcome: a.get(outcome, 0) + b.get(outcome, 0) for outcome in OUTCOMES}


def progress(
    total: int, counts: Mapping[str, int], chunks_done: int, chunks: int
) -> dict[str, Any]:
    processed = sum(counts.get(outcome, 0) for outcome in OUTCOMES)
    return {
        "total": total,
        "processed": processed,
        **counts,
        "chunksDone": chunks_done,
        "chunks": chunks,
    }
