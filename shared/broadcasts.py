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

from shared import clock, idempotency, messaging, policy, twilio_errors
from shared.broadcast_orchestration import BROADCAST_ORCHESTRATOR, OUTCOMES, tally
from shared.deliveries import now
from shared.errors import AppError, ServiceUnavailable, ValidationFailed
from shared.idempotency import KEY_HEADER, request_fingerprint
from shared.limits import enforce_limits
from shared.phone import InvalidPhoneNumber, PhoneNumber, to_e164
from shared.settings import Settings
from shared.store import Accepted, Attempt, BroadcastRecord, Store, StoredResponse
from shared.validation import Errors, decode

if TYPE_CHECKING:
    from azure.durable_functions import DurableOrchestrationClient
    from twilio.rest import Client

MAX_PAGE = 1000

logger = logging.getLogger(__name__)


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
    """Record, charge and start the broadcast; (record, False) when this request started
    nothing because an earlier one with the key did. Each step can be repeated: a retry
    after a failure (or a crash) at any step finishes what is missing, so a broadcast is
    never reported started unless its orchestration exists, and is charged once."""
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
    created = store.create_broadcast(record)
    if not created:
        existing = store.broadcast(record.id)
        if existing is None or existing.fingerprint != record.fingerprint:
            raise AppError(
                f"This {KEY_HEADER} was used with a different request.",
                status_code=422,
                title="Idempotency-Key reused",
                extra={"rule": "idempotency-key"},
            )
        record = existing
        status = await client.get_status(record.id)
        if status.runtime_status is not None:
            return record, False  # started by the request that created it
    if not record.charged:
        try:
            # The caller's quota is charged for every recipient now, before anything is sent.
            enforce_limits(
                store, settings, caller=caller, destination=None, amount=record.total,
                now=clock.now(),
            )  # fmt: skip
        except AppError:
            if created:
                store.forget_broadcast(record.id)
            raise
        record = store.update_broadcast(record.id, lambda r: replace(r, charged=True)) or record
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
        raise ServiceUnavailable(
            "The broadcast could not be started; retry with the same Idempotency-Key."
        ) from exc
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
    store.update_broadcast(record.id, lambda r: replace(r, cancelled=True))
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
    """Send one recipient's message at most once, through the same Idempotency-Key core as
    SendSms: a redelivered or retried activity answers from the recipient's key, and one
    whose earlier attempt's answer was lost asks Twilio first. Twilio's permanent refusals
    are results; transient trouble is {"status": "retry"} for the chunk to try again later
    (on the chunk's final round, "not-sent"). Only a broken store raises."""
    broadcast_id, index, to = payload["id"], int(payload["index"]), payload["to"]
    final = bool(payload.get("final", False))
    record = store.broadcast(broadcast_id)
    if record is None or record.cancelled:
        return _record(store, broadcast_id, {"index": index, "to": to, "status": "canceled"})
    sender = policy.SmsSender(record.from_number, record.messaging_service_sid)
    request = messaging.SmsRequest(to=PhoneNumber(to, None), body=record.body, sender=sender)

    def sent(accepted: Accepted) -> Accepted:
        result = {"index": index, "to": to, "status": "sent", "sid": accepted.body["sid"]}
        return Accepted(result, accepted.record)

    def create(attempt: Attempt) -> Accepted:
        return sent(
            messaging.send_sms(
                request, settings, client, store, record.caller, charge_caller=False,
                attempt=attempt,
            )
        )  # fmt: skip

    def find(attempt: Attempt) -> Accepted | None:
        found = messaging.find_sent(client, store, record.caller, attempt)
        return sent(found) if found else None

    def failure(exc: Exception) -> tuple[StoredResponse, twilio_errors.Outcome]:
        outcome = twilio_errors.outcome(exc)
        result: dict[str, Any] = {"index": index, "to": to}
        if outcome == "refused":
            status = "failed"
        elif not final:
            status = "retry"
        else:  # the chunk's last round: what became of it, as far as anyone knows
            status = "unknown" if outcome == "unknown" else "not-sent"
        result.update(status=status, **_why(exc))
        return StoredResponse(200, json.dumps(result), "application/json"), outcome

    creation = idempotency.Creation(messaging.intent(request), create, find)
    try:
        answer = idempotency.once(
            store, settings, f"broadcast:{broadcast_id}", str(index), "recipient",
            creation, clock.now(), failure,
        )  # fmt: skip
    except idempotency.Busy as busy:
        status = "unknown" if final else "retry"
        busy_result = {"index": index, "to": to, "status": status, "error": busy.detail}
        return _record(store, broadcast_id, busy_result)
    result: dict[str, Any] = json.loads(answer.stored.body)
    return _record(store, broadcast_id, result)


def _record(store: Store, broadcast_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """Keep the recipient's result for the status view, unless the chunk will try again."""
    if result["status"] != "retry":
        store.record_recipient_result(broadcast_id, int(result["index"]), result)
    return result


def _why(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, TwilioRestException):
        return {"errorCode": exc.code}
    if isinstance(exc, AppError):  # opted out, over the destination limit, Twilio's trouble
        return {"error": exc.title, **{k: v for k, v in exc.extra.items() if k != "outcome"}}
    return {"error": type(exc).__name__}


def settle_chunk(job: Mapping[str, Any], store: Store) -> dict[str, int]:
    """After a chunk gave up: recipients without a result were not sent (never "failed":
    nothing was refused); the chunk's counts."""
    results = []
    for index, to in load_chunk(job, store):
        found = store.recipient_results(job["id"], index, 1)
        if not found:
            found = [{"index": index, "to": to, "status": "not-sent", "error": "gave up"}]
            store.record_recipient_result(job["id"], index, found[0])
        results.append(found[0])
    return tally(results)


def _broadcast_id(caller: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"b{uuid.uuid4().hex}"
    return "b" + hashlib.sha256(f"{caller}|{idempotency_key}".encode()).hexdigest()[:32]
