"""POST /api/StatusCallback: Twilio's message and call status callbacks → 204, empty body."""

from __future__ import annotations

import azure.functions as func

from shared import deliveries
from shared.http_io import WEBHOOK_MAX_BYTES, error_boundary, read_fields, require_method
from shared.settings import get_settings
from shared.state import get_store
from shared.webhooks import verify_twilio_request

bp = func.Blueprint()


# Anonymous to the host, like TwiML: the X-Twilio-Signature check is the authentication.
@bp.function_name("StatusCallback")
@bp.route(route=deliveries.STATUS_CALLBACK_ROUTE, auth_level=func.AuthLevel.ANONYMOUS)
@error_boundary
def status_callback(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    verify_twilio_request(req, settings)
    deliveries.apply_callback(get_store(settings), read_fields(req, WEBHOOK_MAX_BYTES))
    return func.HttpResponse(status_code=204)
