"""Broadcasts: one request, thousands of recipients, sent by Durable Functions.

This module holds everything but the orchestrators: validating and accepting a
broadcast, what the activities do for one recipient, and the app's view of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from twilio.base.exceptions import TwilioRestException

from shared import clock, idempotency, messaging, policy
from shared.broadcast_orchestration import BROADCAST_ORCHESTRATOR, OUTCOMES, tally
from shared.deliveries import now
from shared.errors import AppError, ServiceUnavailable, ValidationFailed
from shared.idempotency import KEY_HEADER, request_fingerprint
from shared.limits import enforce_limits
from shared.phone import InvalidPhoneNumber, PhoneNumber, to_e164
from shared.reconcile import content_digest
from shared.settings import Settings
from shared.store import Attempt, BroadcastRecord, Store, StoredResponse
from shared.validation import Errors, decode

if TYPE_CHECKING:
    from azure.durable_functions import DurableOrchestrationClient
    from twilio.rest import Client

MAX_PAGE = 1000

logger = logging.getLogger(__name__)


class TransientSendError(Exception):
    """Raised by the send activity so that RetryOptions retries it; nothing was sent."""


@dataclass(frozen=True)
class BroadcastPlan:
    recipients: tuple[str, ...]  # E.164, duplicates removed, in the order given
    rejected: tuple[dict[str, str], ...]
    body: str
    sender: policy.SmsSender
    fingerprint: str


def max_request_bytes(settings: Settings) -> int:
    """The largest valid start request: every allowed recipient (a number of up to 64
    characters, percent-encoded in a form, is under 200 bytes) plus room for the rest."""
    return 64 * 1024 + 200 * settings.broadcast_max_recipients


def plan_broadcast(fields: Mapping[str, Any], settings: Settings) -> BroadcastPlan:
    """Validate the request and every number; bad numbers are reported, not fatal."""
    from shared.shapes import BroadcastRequest  # msgspec only where a body is parsed

    errors = Errors()
    values = decode(fields, BroadcastRequest, errors)
    if len(values.get("to", ())) > settings.broadcast_max_recipients:
        errors.error("to", f"must have at most {settings.broadcast_max_recipients} numbers")
    errors.check()
    request = BroadcastRequest(**values)
    sender = policy.sms_sender(request.from_, settings)
    recipients: dict[str, None] = {}
    rejected: list[dict[str, str]] = []
    for text in request.to:
        try:
            number = to_e164(text, settings.default_region)
            policy.check_destination(number, settings, "sms")
        except InvalidPhoneNumber as exc:
            rejected.append({"to": text, "error": str(exc)})
            continue
        except AppError as exc:
            rejected.append({"to": text, "error": exc.detail})
            continue
        recipients.setdefault(number.e164, None)
    if not recipients:
        raise ValidationFailed([{"field": "to", "message": "has no number that may be sent to"}])
    return BroadcastPlan(
        tuple(recipients), tuple(rejected), request.body, sender, request_fingerprint(fields)
    )


async def start_broadcast(
    plan: BroadcastPlan,
    *,
    caller: str,
    idempotency_key: str | None,
    settings: Settings,
    store: Store,
    client: DurableOrchestrationClient,
) -> tuple[BroadcastRecord, bool]:
    """Record and start the broadcast; (existing, False) when the key was seen before."""
    record = BroadcastRecord(
        id=_broadcast_id(caller, idempotency_key),
        caller=caller,
        fingerprint=plan.fingerprint,
        body=plan.body,
        from_number=plan.sender.from_number,
        messaging_service_sid=plan.sender.messaging_service_sid,
        total=len(plan.recipients),
        chunk_size=settings.broadcast_chunk_size,
        rejected=len(plan.rejected),
        created_at=now(),
    )
    if not store.create_broadcast(record):
        existing = store.broadcast(record.id)
        if existing is None or existing.fingerprint != record.fingerprint:
            raise AppError(
                f"This {KEY_HEADER} was used with a different request.",
                status_code=422,
                title="Idempotency-Key reused",
            )
        return existing, False
    try:
        # The caller's quota is charged for every recipient now, before anything is sent.
        enforce_limits(
            store, settings, caller=caller, destination=None, amount=record.total, now=clock.now()
        )
    except AppError:
        store.forget_broadcast(record.id)
        raise
    size = record.chunk_size
    store.add_broadcast_chunks(
        record.id, [list(plan.recipients[i : i + size]) for i in range(0, record.total, size)]
    )
    orchestration_input = {
        "id": record.id,
        "total": record.total,
        "chunks": record.chunks,
        "next_chunk": 0,
        "counts": dict.fromkeys(OUTCOMES, 0),
        "chunk_size": size,
        "parallelism": settings.broadcast_parallelism,
        "mps": settings.broadcast_messages_per_second,
    }
    try:
        await client.start_new(BROADCAST_ORCHESTRATOR, record.id, orchestration_input)
    except Exception as exc:
        if "already exists" in str(exc):  # a concurrent duplicate started it first
            return record, False
        logger.exception("Could not start broadcast %s", record.id)
        raise ServiceUnavailable("The broadcast could not be started; try again.") from exc
    logger.info("Broadcast %s started: %d recipients", record.id, record.total)
    return record, True


async def broadcast_view(
    record: BroadcastRecord,
    store: Store,
    client: DurableOrchestrationClient,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    status = await client.get_status(record.id)
    progress = status.custom_status if status and isinstance(status.custom_status, dict) else {}
    counts = {outcome: int(progress.get(outcome, 0)) for outcome in OUTCOMES}
    runtime = status.runtime_status.name if status and status.runtime_status else "Unknown"
    return {
        "id": record.id,
        "runtimeStatus": runtime,
        "cancelled": record.cancelled,
        "total": record.total,
        "rejected": record.rejected,
        "counts": {"pending": record.total - sum(counts.values()), **counts},
        "progress": round(sum(counts.values()) / record.total, 4) if record.total else 1.0,
        "createdAt": record.created_at,
        "results": store.recipient_results(record.id, offset, limit),
        "offset": offset,
        "limit": limit,
    }


async def cancel_broadcast(
    record: BroadcastRecord, store: Store, client: DurableOrchestrationClient
) -> None:
    """Stop it: no new chunk starts, and sends still queued find the flag and skip."""
    store.cancel_broadcast(record.id)
    try:
        await client.terminate(record.id, "cancelled by the caller")
    except Exception:  # already finished, failed or terminated: the flag is what counts
        logger.info("Broadcast %s was not running when cancelled", record.id)


# Activities ---------------------------------------------------------------------------


def load_chunk(job: Mapping[str, Any], store: Store) -> list[list[Any]]:
    """[[global index, number], …] for one chunk."""
    first = job["chunk"] * job["chunk_size"]
    return [[first + i, to] for i, to in enumerate(store.broadcast_chunk(job["id"], job["chunk"]))]


def send_to_recipient(
    payload: Mapping[str, Any], settings: Settings, store: Store, client: Client
) -> dict[str, Any]:
    """Send one recipient's message exactly once; permanent failures are results,
    transient ones raise (and release the recipient's key) so the activity is retried."""
    broadcast_id, index, to = payload["id"], int(payload["index"]), payload["to"]
    scope, key = f"broadcast:{broadcast_id}", str(index)
    record = store.broadcast(broadcast_id)
    now = clock.now()
    sender = (record.messaging_service_sid or record.from_number or "") if record else ""
    body = record.body if record else None
    attempt = Attempt("message", to, sender, content_digest(body), now, f"{broadcast_id}:{index}")
    state, claimed = idempotency.claim(store, scope, key, "recipient", attempt, now)
    if state == "done" and claimed is not None and claimed.response is not None:
        result: dict[str, Any] = json.loads(claimed.response.body)  # a replay: never send twice
        return result
    if state != "new":
        raise TransientSendError("another attempt for this recipient is still running")
    result = {"index": index, "to": to}
    try:
        if record is None or record.cancelled:
            result["status"] = "canceled"
        else:
            result.update(_send(record, to, settings, store, client))
    except (TransientSendError, ServiceUnavailable):
        idempotency.settle(store, scope, key, attempt, lambda r: replace(r, expires_at=0.0))
        raise
    stored = StoredResponse(200, json.dumps(result), "application/json")
    idempotency.settle(store, scope, key, attempt, lambda r: replace(r, response=stored))
    store.record_recipient_result(broadcast_id, index, result)
    return result


def settle_chunk(job: Mapping[str, Any], store: Store) -> dict[str, int]:
    """After a chunk gave up: recipients without a result are failed; the chunk's counts."""
    results = []
    for index, to in load_chunk(job, store):
        found = store.recipient_results(job["id"], index, 1)
        if not found:
            found = [{"index": index, "to": to, "status": "failed", "error": "Twilio kept failing"}]
            store.record_recipient_result(job["id"], index, found[0])
        results.append(found[0])
    return tally(results)


def _send(
    record: BroadcastRecord, to: str, settings: Settings, store: Store, client: Client
) -> dict[str, Any]:
    import requests

    sender = policy.SmsSender(record.from_number, record.messaging_service_sid)
    request = messaging.SmsRequest(to=PhoneNumber(to, None), body=record.body, sender=sender)
    try:
        sent = messaging.send_sms(
            request, settings, client, store, record.caller, charge_caller=False
        )
    except TwilioRestException as exc:
        if exc.status == 429 or exc.status >= 500:
            raise TransientSendError(f"Twilio answered {exc.status}") from exc
        return {"status": "failed", "errorCode": exc.code}
    except requests.Timeout:
        # Twilio may have accepted it: never retried, so never sent twice.
        return {"status": "failed", "error": "Twilio timed out; the message may have been sent"}
    except requests.ConnectionError as exc:
        raise TransientSendError("could not connect to Twilio") from exc
    except ServiceUnavailable:
        raise
    except AppError as exc:  # opted out, over the destination limit
        return {"status": "failed", "error": exc.title, **exc.extra}
    return {"status": "sent", "sid": sent["sid"]}


def _broadcast_id(caller: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"b{uuid.uuid4().hex}"
    return "b" + hashlib.sha256(f"{caller}|{idempotency_key}".encode()).hexdigest()[:32]
