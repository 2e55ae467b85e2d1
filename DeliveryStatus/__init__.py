"""GET /api/messages/{sid} and /api/calls/{sid} → {sid, status, history, errorCode, …}."""

from __future__ import annotations

import azure.functions as func

from shared import deliveries
from shared.caller import identify_caller
from shared.delivery_status import Kind
from shared.errors import AppError
from shared.http_io import error_boundary, json_response, require_method
from shared.settings import get_settings
from shared.state import get_store

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
    settings = get_settings()
    caller = identify_caller(req, settings)
    sid = req.route_params.get("sid", "")
    record = get_store(settings).delivery(kind, sid)
    # Only what we created (not stray callbacks), and only for the caller that created it:
    # the same user, or the same function key. Anyone else learns nothing, not even that
    # the SID exists.
    if record is None or record.caller is None or record.caller != caller.id:
        raise AppError(f"No {kind} {sid} was created through this app.", status_code=404)
    return json_response(deliveries.view(record))
