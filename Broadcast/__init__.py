"""Broadcasts on Durable Functions.

POST   /api/broadcasts        {to: [...], body, from?} → 202 {id, statusUrl, accepted, rejected}
GET    /api/broadcasts/{id}   → {runtimeStatus, counts, progress, results (paged)}
DELETE /api/broadcasts/{id}   → 202; recipients not yet sent are never sent
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared import broadcast_orchestration as orchestration
from shared import broadcasts
from shared.caller import identify_caller
from shared.errors import AppError, BadRequest
from shared.http_io import async_error_boundary, json_response, read_fields, require_method
from shared.idempotency import KEY_HEADER
from shared.settings import get_settings
from shared.state import get_store
from shared.twilio_client import get_client
from shared.webhooks import function_url

bp = df.Blueprint()


@bp.function_name("StartBroadcast")
@bp.route(route="broadcasts")
@bp.durable_client_input(client_name="client")
@async_error_boundary
async def start_broadcast(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    caller = identify_caller(req, settings)
    fields = read_fields(req, broadcasts.max_request_bytes(settings))
    plan = broadcasts.plan_broadcast(fields, settings)
    record, started = await broadcasts.start_broadcast(
        plan, caller=caller.id, idempotency_key=req.headers.get(KEY_HEADER),
        settings=settings, store=get_store(settings), client=client,
    )  # fmt: skip
    status_url = function_url(settings, f"broadcasts/{record.id}")
    body = {
        "id": record.id,
        "statusUrl": status_url,
        "accepted": record.total,
        "rejected": list(plan.rejected),
        "replayed": not started,
    }
    return json_response(body, status_code=202, headers={"Location": status_url})


@bp.function_name("Broadcast")
@bp.route(route="broadcasts/{id}")
@bp.durable_client_input(client_name="client")
@async_error_boundary
async def broadcast(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    require_method(req, "GET", "DELETE")
    settings = get_settings()
    caller = identify_caller(req, settings)
    store = get_store(settings)
    record = store.broadcast(req.route_params.get("id", ""))
    if record is None or record.caller != caller.id:  # only its creator may see or cancel it
        raise AppError("No such broadcast.", status_code=404)
    if req.method == "DELETE":
        await broadcasts.cancel_broadcast(record, store, client)
        return json_response({"id": record.id, "cancelled": True}, status_code=202)
    offset, limit = _page(req)
    return json_response(await broadcasts.broadcast_view(record, store, client, offset, limit))


# Durable calls these by function name: the names shared/broadcast_orchestration.py uses
# (tests/test_worker.py checks the worker indexes them under exactly those names).
@bp.orchestration_trigger(context_name="context")
def broadcast_orchestrator(context: df.DurableOrchestrationContext) -> orchestration.Orchestration:
    return (yield from orchestration.broadcast(context))


@bp.orchestration_trigger(context_name="context")
def broadcast_chunk_orchestrator(
    context: df.DurableOrchestrationContext,
) -> orchestration.Orchestration:
    return (yield from orchestration.broadcast_chunk(context))


@bp.activity_trigger(input_name="job")
def broadcast_load_chunk(job: dict) -> list[list[Any]]:
    return broadcasts.load_chunk(job, get_store(get_settings()))


@bp.activity_trigger(input_name="payload")
def broadcast_send(payload: dict) -> dict[str, Any]:
    settings = get_settings()
    return broadcasts.send_to_recipient(
        payload, settings, get_store(settings), get_client(settings)
    )


@bp.activity_trigger(input_name="job")
def broadcast_settle_chunk(job: dict) -> dict[str, int]:
    return broadcasts.settle_chunk(job, get_store(get_settings()))


def _page(req: func.HttpRequest) -> tuple[int, int]:
    try:
        offset = int(req.params.get("offset", "0"))
        limit = int(req.params.get("limit", "100"))
    except ValueError:
        raise BadRequest("offset and limit must be whole numbers.") from None
    if offset < 0 or not 1 <= limit <= broadcasts.MAX_PAGE:
        raise BadRequest(f"offset must be ≥ 0 and limit 1 to {broadcasts.MAX_PAGE}.")
    return offset, limit
