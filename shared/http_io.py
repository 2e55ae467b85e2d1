"""HTTP in and out for handlers: body parsing, JSON/XML/problem responses, one error boundary.

Handlers raise AppError (or let Twilio's exceptions through); `error_boundary` is the
only place that turns failures into responses, so no handler formats an error itself
and no stack trace ever reaches a caller.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

from shared import telemetry
from shared.errors import AppError, BadRequest, MethodNotAllowed, UnsupportedMediaType

# Bodies each route accepts, checked before anything is parsed. Twilio's webhooks are a
# few kilobytes; the mobile routes get room for their largest valid request (a 1,600
# character body and ten 2,048-character media URLs, percent-encoded in a form).
WEBHOOK_MAX_BYTES = 64 * 1024
MOBILE_MAX_BYTES = 256 * 1024

logger = logging.getLogger(__name__)
Handler = Callable[[func.HttpRequest], func.HttpResponse]

_FORM = "application/x-www-form-urlencoded"


def require_method(req: func.HttpRequest, *allowed: str) -> None:
    if req.method not in allowed:
        raise MethodNotAllowed(req.method, allowed)


def check_body_size(req: func.HttpRequest, max_bytes: int) -> None:
    """413 before anything is parsed. The host accepts up to 100 MB; parsing (and, for
    Twilio's routes, hashing) a body that large costs seconds of CPU and gigabytes."""
    declared = req.headers.get("Content-Length", "")
    size = int(declared) if declared.isascii() and declared.isdigit() else 0
    size = max(size, len(req.get_body()))
    if size > max_bytes:
        raise AppError(
            f"The body is {size} bytes; this route accepts at most {max_bytes}.",
            status_code=413,
            title="Payload Too Large",
            extra={"rule": "body-size", "maxBytes": max_bytes},
        )


def read_fields(req: func.HttpRequest, max_bytes: int) -> dict[str, Any]:
    """A JSON object body, or a form body with the same field names (repeats → list)."""
    check_body_size(req, max_bytes)
    content_type = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not req.get_body():
        raise BadRequest("A JSON object body is required.", title="Empty body")
    if content_type == "application/json" or content_type.endswith("+json"):
        return _json_object(req.get_body())
    if content_type == _FORM:
        form = req.form
        return {key: values[0] if len(values) == 1 else values for key, values in form.lists()}
    raise UnsupportedMediaType(f"Send application/json or {_FORM}.")


def _json_object(body: bytes) -> dict[str, Any]:
    # msgspec, not json: it refuses a lone surrogate escape ("\\ud800"), which json accepts
    # and which would fail much later, when the text is encoded on its way to Twilio.
    import msgspec

    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise BadRequest("The body is not valid JSON.", title="Malformed JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.", title="Malformed JSON")
    return data


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status_code, headers=headers, mimetype="application/json"
    )


def xml_response(xml: str) -> func.HttpResponse:
    # func.HttpResponse defaults to text/plain, which Twilio rejects (error 12300).
    return func.HttpResponse(xml, status_code=200, mimetype="application/xml")


def problem_response(error: AppError) -> func.HttpResponse:
    body = {
        "type": error.problem_type,
        "title": error.title,
        "status": error.status_code,
        "detail": error.detail,
        **error.extra,
    }
    return func.HttpResponse(
        json.dumps(body),
        status_code=error.status_code,
        headers=error.headers,
        mimetype="application/problem+json",
    )


def error_boundary(handler: Handler) -> Handler:
    """Map every failure of `handler` to an RFC 9457 problem response."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        with telemetry.request_span(handler.__name__):
            response = as_response(lambda: handler(req), handler.__name__)
            telemetry.answered(response.status_code)
            return response

    return wrapper


def as_response(operation: Callable[[], func.HttpResponse], name: str) -> func.HttpResponse:
    """The operation's response, or the problem response for whatever it raised."""
    try:
        return operation()
    except Exception as exc:  # the last line of defence: never a stack trace out
        return failure_response(exc, name)


def async_error_boundary[**P](
    handler: Callable[P, Awaitable[func.HttpResponse]],
) -> Callable[P, Awaitable[func.HttpResponse]]:
    """error_boundary for async handlers (durable client functions are async)."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> func.HttpResponse:
        with telemetry.request_span(handler.__name__):
            try:
                response = await handler(*args, **kwargs)
            except Exception as exc:
                response = failure_response(exc, handler.__name__)
            telemetry.answered(response.status_code)
            return response

    return wrapper


def failure_response(exc: Exception, name: str) -> func.HttpResponse:
    if isinstance(exc, AppError):
        return _answer(name, exc)
    known = _known_failure(exc)
    if known is None:
        logger.exception("Unhandled error in %s", name, exc_info=exc)
        known = AppError("An unexpected error occurred.")
    return _answer(name, known)


def _answer(name: str, error: AppError) -> func.HttpResponse:
    telemetry.refused(error.extra.get("rule"), error.extra.get("twilioCode"))
    if error.status_code >= 500:
        logger.warning("%s answered %d: %s", name, error.status_code, error.title)
    return problem_response(error)


def _known_failure(exc: Exception) -> AppError | None:
    from twilio.base.exceptions import TwilioRestException

    from shared import twilio_errors

    if isinstance(exc, TwilioRestException):
        logger.info("Twilio error status=%s code=%s", exc.status, exc.code)
        return twilio_errors.from_twilio_exception(exc)
    return twilio_errors.from_transport_exception(exc)
