"""POST /api/SendSms: {to, body?, from?, mediaUrl?} → 201 {sid, status, to, from, …}.

Honours Idempotency-Key; answers 429 over a limit and 409 for opted-out recipients.
"""

from __future__ import annotations

import azure.functions as func

from shared import messaging
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


# No `methods=` on the route: the host would answer other methods with a bare 404,
# and callers deserve a 405 problem with Allow.
@bp.function_name("SendSms")
@bp.route(route="SendSms")
@error_boundary
def send_sms(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    caller = identify_caller(req, settings)
    store = get_store(settings)
    fields = read_fields(req, MOBILE_MAX_BYTES)
    request = messaging.parse_sms_request(fields, settings)

    def send() -> func.HttpResponse:
        client = get_client(settings)
        result = messaging.send_sms(request, settings, client, store, caller.id)
        return json_response(result, status_code=201)

    return idempotent(req, "SendSms", fields, store, settings, caller.id, send)
