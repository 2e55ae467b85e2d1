"""GET /api/openapi.json → the OpenAPI 3.1 document of every public route (anonymous)."""

from __future__ import annotations

import azure.functions as func

from shared.http_io import error_boundary, json_response, require_method
from shared.openapi import openapi_document
from shared.settings import get_settings

bp = func.Blueprint()


@bp.function_name("OpenApi")
@bp.route(route="openapi.json", auth_level=func.AuthLevel.ANONYMOUS)
@error_boundary
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    require_method(req, "GET")
    return json_response(openapi_document(get_settings()))
