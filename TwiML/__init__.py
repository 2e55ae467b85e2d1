"""GET|POST /api/TwiML?message=…&voice=…: signed by Twilio → application/xml <Response>."""

from __future__ import annotations

import azure.functions as func

from shared import policy, twiml
from shared.http_io import async_error_boundary, require_method, xml_response
from shared.settings import get_settings
from shared.webhooks import verify_twilio_request

bp = func.Blueprint()


# Anonymous to the host: Twilio cannot send a function key without it becoming part of
# the signed URL and its logs; the X-Twilio-Signature check is the authentication.
# Async, so the worker runs it on its event loop: while sends wait on a slow store or on
# Twilio and hold every thread of the pool, a live call's TwiML is still answered at once
# (Twilio gives up after 15 s). It does no I/O, so nothing here blocks the loop.
@bp.function_name("TwiML")
@bp.route(route="TwiML", auth_level=func.AuthLevel.ANONYMOUS)
@async_error_boundary
async def twiml_document(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "GET", "POST")
    settings = get_settings()
    verify_twilio_request(req, settings)
    speech = twiml.speech_from_params(
        req.params, settings.twiml_default_message, settings.twiml_default_voice
    )
    for url in twiml.played_urls(speech):
        policy.check_twiml_url(url, settings, field="message")
    return xml_response(twiml.render(speech))
