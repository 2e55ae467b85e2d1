"""POST /api/MakeCall: {to, from?, message?, voice?, language?, url?} → 201 {sid, status, …}."""

from __future__ import annotations

import azure.functions as func

from shared import calls
from shared.http_io import error_boundary, json_response, read_fields, require_method
from shared.settings import get_settings
from shared.twilio_client import get_client

bp = func.Blueprint()


@bp.function_name("MakeCall")
@bp.route(route="MakeCall")
@error_boundary
def make_call(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    request = calls.parse_call_request(read_fields(req), settings)
    result = calls.place_call(request, settings, get_client(settings))
    return json_response(result, status_code=201)
