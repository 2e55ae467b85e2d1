"""Timer Cleanup (daily, 03:17 UTC): deletes expired idempotency keys, idle limit counters,
and delivery, conversation, voicemail and finished broadcast records older than
STATE_RETENTION_DAYS (shared/cleanup.py says why each)."""

from __future__ import annotations

import azure.functions as func

from shared import cleanup, clock
from shared.settings import get_settings
from shared.state import get_store

bp = func.Blueprint()


# use_monitor: the host records the last run in storage, so a run missed while no
# instance was up (Flex scales to zero) happens at the next start, marked past due.
@bp.function_name("Cleanup")
@bp.timer_trigger(schedule=cleanup.SCHEDULE, arg_name="timer", use_monitor=True)
def cleanup_state(timer: func.TimerRequest) -> None:
    settings = get_settings()
    cleanup.purge(get_store(settings), settings, clock.now())
