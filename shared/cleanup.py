"""Expiry: deleting the state no request can use any more (the Cleanup timer, daily).

- Idempotency keys: a record past its `expires_at` (24 hours after its claim, or at once
  when a send that never reached Twilio released it) answers as new
  (`idempotency.decide`), so it is dead.
- Limit counters: a slot counts while any part of it lies inside its window
  (`limits._live`). A row's newest slot is no newer than the row's last write, and a slot
  lasts window/SLOTS, so a row not written for the longest configured window plus one of
  its slots holds no slot that any configured limit still counts: it is dead. The slot
  numbers alone cannot say so, since their unit is the slot length of a limit the row does
  not name (a day's slots read as an hour's would look decades old).
- Delivery records (what `GET /api/messages/{sid}` shows): kept `STATE_RETENTION_DAYS`
  after their last change (a late callback counts as one), then deleted.
- Voicemails (who called, each recording's status; the recording stays at Twilio): kept
  `STATE_RETENTION_DAYS` after their call's last change (a late recording callback counts
  as one), then deleted with it.
- Broadcasts (the record, the recipients' numbers in chunks, a result per recipient):
  deleted together `STATE_RETENTION_DAYS` after their last change (the last result
  recorded, or a cancel), once finished (`store.broadcast_finished`: every recipient has
  a result, or it was cancelled). One still running stays, however old: it still reads its
  chunks and records results.
- Durable Functions' history of the broadcasts' orchestrations (their inputs, the chunks
  of numbers activities returned, results): purged through the extension once they ended
  (completed, failed, terminated) and were created more than `STATE_RETENTION_DAYS` ago
  (`purge_history` says why created). Running or pending ones stay, however old.
- Conversations: each message is kept `STATE_RETENTION_DAYS` after it was sent or
  received; a caller's link to a number as long after its last send there (replies
  arriving later are stored, shown to nobody).

Opt-outs are never deleted: a STOP holds until the recipient opts in again at Twilio.
Every delete is conditional on the row being as it was read, so a row in use again since
(a key claimed anew, a counter charged) stays. The app's state and Durable's history are
purged each even when the other fails (`run`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from azure.durable_functions import OrchestrationRuntimeStatus

from shared.limits import SLOTS
from shared.settings import Settings
from shared.store import Store

if TYPE_CHECKING:
    from azure.durable_functions import DurableOrchestrationClient

# NCRONTAB (seconds first), UTC: daily, off the hour, when traffic is low in most zones.
SCHEDULE = "0 17 3 * * *"
DAY_SECONDS = 86400
# What a broadcast's orchestrations end in: completed, failed (an orchestrator error, a
# chunk's retries spent), terminated (a cancel). Running, Pending or ContinuedAsNew ones
# still read their chunks and are never named.
ENDED_STATUSES = (
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
)
# The extension requires a lower bound on the created time; nothing was created before it.
SINCE_EVER = datetime(1970, 1, 1, tzinfo=UTC)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    keys: int
    counters: int
    deliveries: int
    conversations: int
    voicemails: int
    broadcasts: int


def counter_lifetime(settings: Settings) -> float:
    """Seconds after its last write until a counter row holds nothing any limit counts."""
    windows = [
        limit.window_seconds
        for limit in (
            settings.limit_per_caller,
            settings.limit_global,
            settings.limit_per_destination,
        )
        if limit is not None
    ]
    longest = max(windows, default=0)
    return longest + longest / SLOTS


def purge(store: Store, settings: Settings, now: float) -> Purged:
    """Delete what has expired at `now`; how many of each were deleted."""
    retained_since = now - settings.state_retention_days * DAY_SECONDS
    purged = Purged(
        keys=store.purge_keys(now),
        counters=store.purge_counters(now - counter_lifetime(settings)),
        deliveries=store.purge_deliveries(retained_since),
        conversations=store.purge_conversations(retained_since),
        voicemails=store.purge_voicemails(retained_since),
        broadcasts=store.purge_broadcasts(retained_since),
    )
    logger.info(
        "Cleanup deleted %d idempotency keys, %d limit counters, %d delivery records, "
        "%d conversation records, %d calls' voicemails, %d broadcasts",
        purged.keys, purged.counters, purged.deliveries, purged.conversations, purged.voicemails,
        purged.broadcasts,
    )  # fmt: skip
    return purged


async def purge_history(client: DurableOrchestrationClient, settings: Settings, now: float) -> int:
    """Delete Durable's history of the orchestrations that ended and were created before
    the retention; how many instances went.

    The extension filters on creation, not on the end: created before `now - retention`
    and ended (ENDED_STATUSES; one still running never matches, however old). On Azure
    Storage an instance's created time is its current execution's start, and a broadcast
    continues as new every CHUNKS_PER_GENERATION chunks, each chunk an instance of its own:
    so one that ended after the cutoff goes early by at most one execution's length
    (minutes to hours), against STATE_RETENTION_DAYS days.
    """
    cutoff = datetime.fromtimestamp(now - settings.state_retention_days * DAY_SECONDS, UTC)
    result = await client.purge_instance_history_by(
        created_time_from=SINCE_EVER, created_time_to=cutoff, runtime_status=list(ENDED_STATUSES)
    )
    deleted: int = result.instances_deleted
    logger.info("Cleanup deleted the Durable history of %d ended orchestrations", deleted)
    return deleted


class Incomplete(Exception):
    """A purge failed (and was logged). Raised once both were tried, so that the timer's
    run counts as failed: the host's invocation log and failed-execution alerts show it,
    where an error line alone would hide behind a run marked succeeded."""

    def __init__(self, purged: Purged | None, deleted: int | None) -> None:
        super().__init__("Cleanup did not finish: its errors are logged above")
        self.purged, self.deleted = purged, deleted


async def run(
    store: Store, client: DurableOrchestrationClient, settings: Settings, now: float
) -> tuple[Purged, int]:
    """The timer's work: the app's state and Durable's history, each done even when the
    other fails; Incomplete if either failed (it holds what the other did)."""
    purged: Purged | None = None
    deleted: int | None = None
    try:
        # The store's calls block: off the event loop, as a sync function would run.
        purged = await asyncio.to_thread(purge, store, settings, now)
    except Exception as exc:
        # The type only: a storage error's text may quote keys, and keys hold numbers.
        logger.error("Cleanup could not delete the app's expired state: %s", type(exc).__name__)
    try:
        deleted = await purge_history(client, settings, now)
    except Exception as exc:
        logger.error("Cleanup could not delete Durable's history: %s: %s", type(exc).__name__, exc)
    if purged is None or deleted is None:
        raise Incomplete(purged, deleted)
    return purged, deleted
