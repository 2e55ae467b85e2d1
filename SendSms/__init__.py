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
    read_fields,
    require_method,
)
from shared.idempotency import Creation, idempotent
from shared.settings import get_settings
from shared.state import get_store
from shared.store import Accepted, Attempt
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

    # The Twilio client is built on first use: requests refused earlier never need it.
    def create(attempt: Attempt) -> Accepted:
        return messaging.send_sms(
            request, settings, get_client(settings), store, caller.id, attempt=attempt
        )

    def find(attempt: Attempt) -> Accepted | None:
        return messaging.find_sent(get_client(settings), store, caller.id, attempt)

    creation = Creation(messaging.intent(request), create, find)
    return idempotent(req, "SendSms", fields, store, settings, caller.id, creation)
