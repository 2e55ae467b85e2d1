"""What happened to the messages and calls we created: Twilio's callbacks, and the app's view."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from shared import clock
from shared.delivery_status import Created, Delivery, Kind, StatusEvent, known
from shared.errors import BadRequest
from shared.phone import mask
from shared.settings import Settings
from shared.store import Store, StoreUnavailable
from shared.webhooks import function_url

STATUS_CALLBACK_ROUTE = "StatusCallback"
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")

logger = logging.getLogger(__name__)


def status_callback_url(settings: Settings) -> str | None:
    return function_url(settings, STATUS_CALLBACK_ROUTE) if settings.public_base_url else None


def remember_created(
    store: Store,
    kind: Kind,
    sid: str,
    *,
    caller: str,
    to: str,
    status: str,
    attempt: str | None = None,
) -> None:
    """Record that `caller` created `sid` (under the key digest `attempt`): one write,
    never a read. Twilio already accepted it: never fail the request."""
    created = Created(caller=caller, to=to, status=status, at=now(), attempt=attempt)
    try:
        store.record_created(kind, sid, created)
    except StoreUnavailable:
        logger.error(
            "Could not record %s %s to %s: its status will not be tracked", kind, sid, mask(to)
        )


def apply_callback(store: Store, fields: Mapping[str, Any]) -> None:
    """Record one status callback; duplicates and late arrivals change nothing."""
    if "MessageSid" in fields:
        kind: Kind = "message"
        sid, status = fields["MessageSid"], fields.get("MessageStatus") or fields.get("SmsStatus")
    elif "CallSid" in fields:
        kind = "call"
        sid, status = fields["CallSid"], fields.get("CallStatus")
    else:
        raise BadRequest("A status callback carries MessageSid or CallSid.")
    if not isinstance(sid, str) or not isinstance(status, str):
        raise BadRequest("The callback's Sid and status must be strings.")
    event = StatusEvent(
        status=status,
        at=now(),
        error_code=_int(fields.get("ErrorCode")),
        duration=_int(fields.get("CallDuration")),
    )
    if not known(kind, status):
        logger.info("%s %s callback with a status we do not track", kind, sid)
        return
    fresh = store.record_status(kind, sid, event)
    logger.info("%s %s callback %s%s", kind, sid, status, "" if fresh else " (a repeat)")


def view(delivery: Delivery) -> dict[str, Any]:
    import msgspec

    from shared.shapes import DeliveryStatus, HistoryEntry, answer

    return answer(
        DeliveryStatus(
            sid=delivery.sid,
            status=delivery.status,
            to=delivery.to,
            errorCode=delivery.error_code,
            createdAt=delivery.created_at,
            history=[
                HistoryEntry(status=e.status, at=e.at, errorCode=e.error_code or None)
                for e in delivery.history
            ],
            duration=delivery.duration if delivery.kind == "call" else msgspec.UNSET,
        )
    )


def now() -> str:
    return clock.iso_now()


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
