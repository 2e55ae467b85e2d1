"""POST /api/IncomingSms: Twilio's incoming-message webhook → <Response/> (or the auto-reply)."""

from __future__ import annotations

import azure.functions as func

from shared import inbound
from shared.http_io import (
    WEBHOOK_MAX_BYTES,
    error_boundary,
    read_fields,
    require_method,
    xml_response,
)
from shared.settings import get_settings
from shared.state import get_store
from shared.webhooks import verify_twilio_request

bp = func.Blueprint()


# Anonymous to the host, like TwiML and StatusCallback: the X-Twilio-Signature check (after
# the body's size) is the authentication.
@bp.function_name("IncomingSms")
@bp.route(route=inbound.INCOMING_SMS_ROUTE, auth_level=func.AuthLevel.ANONYMOUS)
@error_boundary
def incoming_sms(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    verify_twilio_request(req, settings)
    fields = read_fields(req, WEBHOOK_MAX_BYTES)
    return xml_response(inbound.receive_sms(get_store(settings), settings, fields))
