"""GET /api/health → {status, twilio: live|sandbox|missing, state: table|memory|missing,
publicBaseUrl}; anonymous, so it says nothing an attacker could use (no secret, no storage
endpoint, and not whether signatures are checked)."""

from __future__ import annotations

import azure.functions as func

from shared.http_io import error_boundary, json_response, require_method
from shared.settings import get_settings

bp = func.Blueprint()


@bp.function_name("Health")
@bp.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
@error_boundary
def health(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "GET")
    settings = get_settings()
    return json_response(
        {
            "status": "ok",
            "twilio": settings.twilio_mode,
            "state": settings.store_kind,
            "publicBaseUrl": settings.public_base_url,
        }
    )
