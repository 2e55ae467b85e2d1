"""POST /api/SendSms: {to, body?, from?, mediaUrl?} → 201 {sid, status, to, from, …}."""

from __future__ import annotations

import azure.functions as func

from shared import messaging
from shared.http_io import error_boundary, json_response, read_fields, require_method
from shared.settings import get_settings
from shared.twilio_client import get_client

bp = func.Blueprint()


# No `methods=` on the route: the host would answer other methods with a bare 404,
# and callers deserve a 405 problem with Allow.
@bp.function_name("SendSms")
@bp.route(route="SendSms")
@error_boundary
def send_sms(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    request = messaging.parse_sms_request(read_fields(req), settings)
    result = messaging.send_sms(request, settings, get_client(settings))
    return json_response(result, status_code=201)
