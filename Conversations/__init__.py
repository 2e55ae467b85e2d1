"""GET /api/conversations/{number}?limit=&after= → {number, messages (newest first), next}."""

from __future__ import annotations

import azure.functions as func

from shared import conversations
from shared.caller import identify_caller
from shared.errors import ValidationFailed
from shared.http_io import error_boundary, json_response, require_method
from shared.phone import InvalidPhoneNumber, to_e164
from shared.settings import get_settings
from shared.state import get_store

bp = func.Blueprint()


@bp.function_name("Conversation")
@bp.route(route="conversations/{number}")
@error_boundary
def conversation(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "GET")
    settings = get_settings()
    caller = identify_caller(req, settings)
    try:
        number = to_e164(req.route_params.get("number", ""), settings.default_region).e164
    except InvalidPhoneNumber as exc:
        raise ValidationFailed([{"field": "number", "message": str(exc)}]) from None
    limit, after = conversations.page_request(req.params.get("limit"), req.params.get("after"))
    # Only the caller's own view: another caller's, or a number nobody texted, is empty.
    page = get_store(settings).conversation(caller.id, number, after, limit)
    return json_response(conversations.view(number, page.messages, page.after))
