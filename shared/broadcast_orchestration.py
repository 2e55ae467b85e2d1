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
# The send activity answers "retry" when Twilio failed transiently or a recipient's earlier
# attempt cannot be settled yet (a crashed worker's lease, an answer Twilio may still
# give): the chunk tries those recipients again after these pauses, longer than a
# crashed attempt's lease (150 s) in total, and then reports them "not-sent".
RETRY_PAUSES_SECONDS = (15, 45, 120, 300)
# Activity exceptions (a worker that died, the store down) are Durable's to retry; RetryOptions
# has no backoff coefficient. A chunk that still fails is retried whole, slowly: its sends
# already made are answered from their keys, never repeated.
SEND_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=3)
CHUNK_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=3)
# Per recipient: sent; failed (Twilio refused it for good); canceled; not sent (gave up
# on transient trouble: nothing went out); unknown (an answer lost and never settled).
OUTCOMES = ("sent", "failed", "canceled", "notSent", "unknown")
_COUNTED = {
    "sent": "sent", "failed": "failed", "canceled": "canceled", "not-sent": "notSent",
    "unknown": "unknown",
}  # fmt: skip

Orchestration = Generator[Any, Any, Any]


def broadcast(context: df.DurableOrchestrationContext) -> Orchestration:
    """Input: {id, total, chunks, next_chunk, counts, chunk_size, parallelism, mps}."""
    state: dict[str, Any] = context.get_input()
    counts = dict(state["counts"])
    first = state["next_chunk"]
    last = min(first + CHUNKS_PER_GENERATION, state["chunks"])
    # Every episode sets the status from what is known, before anything else: an episode
    # that completes no chunk (a new generation whose first chunk is being retried) would
    # otherwise leave no status at all, and the progress would read 0.
    context.set_custom_status(progress(state["total"], counts, first, state["chunks"]))
    for chunk in range(first, last):
        job = {key: state[key] for key in ("id", "chunk_size", "parallelism", "mps")} | {
            "chunk": chunk
        }
        try:
            result = yield context.call_sub_orchestrator_with_retry(
                CHUNK_ORCHESTRATOR, CHUNK_RETRY, job
            )
        except Exception:
            # The chunk kept failing (the store down for minutes): the recipients it never
            # settled are reported not sent, never as failed sends.
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
    pending: list[list[Any]] = yield context.call_activity(LOAD_CHUNK_ACTIVITY, job)
    counts = dict.fromkeys(OUTCOMES, 0)
    for pause in (*RETRY_PAUSES_SECONDS, None):
        final = pause is None
        again: list[list[Any]] = []
        for start in range(0, len(pending), job["parallelism"]):
            group = pending[start : start + job["parallelism"]]
            began = context.current_utc_datetime
            sends = [
                context.call_activity_with_retry(
                    SEND_ACTIVITY, SEND_RETRY,
                    {"id": job["id"], "index": index, "to": to, "final": final},
                )
                for index, to in group
            ]  # fmt: skip
            results = yield context.task_all(sends)
            again += [
                entry for entry, r in zip(group, results, strict=True) if r["status"] == "retry"
            ]
            counts = add_counts(counts, tally([r for r in results if r["status"] != "retry"]))
            # Pace with a durable timer (never sleep): at most `mps` messages a second.
            next_group_at = began + timedelta(seconds=len(group) / job["mps"])
            if context.current_utc_datetime < next_group_at:
                yield context.create_timer(next_group_at)
        if not again or pause is None:
            break
        pending = again
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=pause))
    return counts


def tally(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        counts[_COUNTED.get(str(result.get("status")), "failed")] += 1
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
