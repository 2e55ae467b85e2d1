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
  chunks and records results. Durable Functions' own history of its orchestrations is the
  extension's, not deleted here.
- Conversations: each message is kept `STATE_RETENTION_DAYS` after it was sent or
  received; a caller's link to a number as long after its last send there (replies
  arriving later are stored, shown to nobody).

Opt-outs are never deleted: a STOP holds until the recipient opts in again at Twilio.
Every delete is conditional on the row being as it was read, so a row in use again since
(a key claimed anew, a counter charged) stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.limits import SLOTS
from shared.settings import Settings
from shared.store import Store

# NCRONTAB (seconds first), UTC: daily, off the hour, when traffic is low in most zones.
SCHEDULE = "0 17 3 * * *"
DAY_SECONDS = 86400

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
