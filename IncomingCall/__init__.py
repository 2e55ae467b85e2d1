"""Inbound calls, for Twilio (each request signed): TwiML for the number's voice webhook,
for the <Dial> and <Record> actions, and the recording status callback (shared/inbound_calls.py).

POST|GET /api/IncomingCall               → application/xml: <Dial> the forward number, or voicemail
POST /api/IncomingCall/DialAction        → application/xml: <Hangup/> if answered, else voicemail
POST /api/IncomingCall/RecordAction      → application/xml: <Hangup/> (who called is stored)
POST /api/IncomingCall/RecordingStatus   → 204, empty body (stored once per RecordingSid and status)
"""

from __future__ import annotations

import azure.functions as func

from shared import inbound_calls
from shared.http_io import (
    WEBHOOK_MAX_BYTES,
    async_error_boundary,
    error_boundary,
    read_fields,
    require_method,
    xml_response,
)
from shared.settings import get_settings
from shared.state import get_store
from shared.webhooks import verify_twilio_request

bp = func.Blueprint()


# Anonymous to the host, like TwiML and StatusCallback: the X-Twilio-Signature check is
# the authentication. The two TwiML answers without I/O are async, as TwiML is: a live
# call's next step is answered at once even while every thread waits on Twilio or the store.
@bp.function_name("IncomingCall")
@bp.route(route=inbound_calls.INCOMING_CALL_ROUTE, auth_level=func.AuthLevel.ANONYMOUS)
@async_error_boundary
async def incoming_call(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "GET", "POST")  # the number's voice URL may be set to either
    settings = get_settings()
    verify_twilio_request(req, settings)
    return xml_response(inbound_calls.incoming_call(settings))


@bp.function_name("IncomingCallDialAction")
@bp.route(route=inbound_calls.DIAL_ACTION_ROUTE, auth_level=func.AuthLevel.ANONYMOUS)
@async_error_boundary
async def dial_action(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    verify_twilio_request(req, settings)
    fields = read_fields(req, WEBHOOK_MAX_BYTES)
    return xml_response(inbound_calls.after_dial(settings, fields))


@bp.function_name("IncomingCallRecordAction")
@bp.route(route=inbound_calls.RECORD_ACTION_ROUTE, auth_level=func.AuthLevel.ANONYMOUS)
@error_boundary
def record_action(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    verify_twilio_request(req, settings)
    fields = read_fields(req, WEBHOOK_MAX_BYTES)
    return xml_response(inbound_calls.after_recording(get_store(settings), fields))


@bp.function_name("RecordingStatus")
@bp.route(route=inbound_calls.RECORDING_STATUS_ROUTE, auth_level=func.AuthLevel.ANONYMOUS)
@error_boundary
def recording_status(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "POST")
    settings = get_settings()
    verify_twilio_request(req, settings)
    inbound_calls.apply_recording_status(get_store(settings), read_fields(req, WEBHOOK_MAX_BYTES))
    return func.HttpResponse(status_code=204)
