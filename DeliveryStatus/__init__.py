"""GET /api/messages/{sid} and /api/calls/{sid} → {sid, status, history, errorCode, …}."""

from __future__ import annotations

import azure.functions as func

from shared import deliveries
from shared.delivery_status import Kind
from shared.errors import AppError
from shared.http_io import error_boundary, json_response, require_method
from shared.settings import get_settings
from shared.store import get_store

bp = func.Blueprint()


@bp.function_name("MessageStatus")
@bp.route(route="messages/{sid}")
@error_boundary
def message_status(req: func.HttpRequest) -> func.HttpResponse:
    return _status(req, "message")


@bp.function_name("CallStatus")
@bp.route(route="calls/{sid}")
@error_boundary
def call_status(req: func.HttpRequest) -> func.HttpResponse:
    return _status(req, "call")


def _status(req: func.HttpRequest, kind: Kind) -> func.HttpResponse:
    require_method(req, "GET")
    sid = req.route_params.get("sid", "")
    record = get_store(get_settings()).delivery(kind, sid)
    if record is None or record.caller is None:  # only what we created, not stray callbacks
        raise AppError(f"No {kind} {sid} was created through this app.", status_code=404)
    return json_response(deliveries.view(record))
