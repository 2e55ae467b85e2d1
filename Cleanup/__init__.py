"""Timer Cleanup (daily, 03:17 UTC): deletes expired idempotency keys, idle limit counters,
delivery, conversation, voicemail and finished broadcast records older than
STATE_RETENTION_DAYS, and Durable's history of the broadcasts' orchestrations that ended
that long ago (shared/cleanup.py says why each)."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from shared import cleanup, clock
from shared.settings import get_settings
from shared.state import get_store

bp = df.Blueprint()


# use_monitor: the host records the last run in storage, so a run missed while no
# instance was up (Flex scales to zero) happens at the next start, marked past due.
# The durable client reaches the extension, which alone may purge its task hub.
@bp.function_name("Cleanup")
@bp.timer_trigger(schedule=cleanup.SCHEDULE, arg_name="timer", use_monitor=True)
@bp.durable_client_input(client_name="client")
async def cleanup_state(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    settings = get_settings()
    await cleanup.run(get_store(settings), client, settings, clock.now())
