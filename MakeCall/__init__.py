"""POST /api/MakeCall: {to, from?, message?, voice?, language?, url?} → 201 {sid, status, …}.

Honours Idempotency-Key; answers 429 over a limit.
"""

from __future__ import annotations

import azure.functions as func

from shared import calls
from shared.caller import identify_caller
from shared.http_io import (
    MOBILE_MAX_BYTES,
    error_boundary,
    json_response,
    read_fields,
    require_method,
)
from shared.idempotency import idempotent
from shared.settings import get_settings
from shared.state import get_store
from shared.twilio_client import get_client

bp = func.Blueprint()


@bp.function_name("MakeCall")
@bp.route(route="MakeCall")
@error_boundary
def make_call(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    caller = identify_caller(req, settings)
    store = get_store(settings)
    fields = read_fields(req, MOBILE_MAX_BYTES)
    request = calls.parse_call_request(fields, settings)

    def place() -> func.HttpResponse:
        client = get_client(settings)
        result = calls.place_call(request, settings, client, store, caller.id)
        return json_response(result, status_code=201)

    return idempotent(req, "MakeCall", fields, store, settings, caller.id, place)
