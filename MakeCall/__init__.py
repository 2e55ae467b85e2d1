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
    read_fields,
    require_method,
)
from shared.idempotency import Creation, idempotent
from shared.settings import get_settings
from shared.state import get_store
from shared.store import Accepted, Attempt
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

    # The Twilio client is built on first use: requests refused earlier never need it.
    def create(attempt: Attempt) -> Accepted:
        return calls.place_call(
            request, settings, get_client(settings), store, caller.id, attempt=attempt
        )

    def find(attempt: Attempt) -> Accepted | None:
        return calls.find_placed(get_client(settings), store, caller.id, attempt)

    creation = Creation(calls.intent(request), create, find)
    return idempotent(req, "MakeCall", fields, store, settings, caller.id, creation)
