"""Idempotency-Key (IETF httpapi idempotency-key draft) for creates that must happen once.

A mobile app on a flaky network retries. With the same key and the same request within
24 hours it gets the first answer again and Twilio is asked once; a different request
under the same key is 422; a repeat while the first is still running is 409.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func

from shared.errors import AppError, BadRequest
from shared.http_io import as_response
from shared.settings import Settings
from shared.store import Store, StoredResponse, StoreUnavailable

KEY_HEADER = "Idempotency-Key"
KEY_TTL_SECONDS = 24 * 3600
# Longer than any invocation can live (host.json functionTimeout is 2 minutes): after
# this, a key whose holder never finished is presumed abandoned and may be claimed again.
LEASE_SECONDS = 600
MAX_KEY_LENGTH = 255
_PROBLEM = "urn:twilio-functions:problem:idempotency"

logger = logging.getLogger(__name__)


def idempotent(
    req: func.HttpRequest,
    route: str,
    fields: Mapping[str, Any],
    store: Store,
    settings: Settings,
    caller: str,
    operation: Callable[[], func.HttpResponse],
) -> func.HttpResponse:
    """Run `operation` once per (caller, route, Idempotency-Key); replay its answer after."""
    key = req.headers.get(KEY_HEADER)
    if key is None:
        return as_response(operation, route)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise BadRequest(f"{KEY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.")
    scope = f"{caller}|{route}"
    fingerprint = request_fingerprint(fields)
    try:
        claim = store.claim_key(
            scope, key, fingerprint, time.time(), KEY_TTL_SECONDS, LEASE_SECONDS
        )
    except StoreUnavailable:
        if not settings.store_fail_open:
            raise
        logger.warning("State store unavailable: %s runs without idempotency (fail open)", route)
        return as_response(operation, route)
    if claim.state == "mismatch":
        raise _problem(
            422, "Idempotency-Key reused", f"This {KEY_HEADER} was used with a different request."
        )
    if claim.state == "in_flight":
        error = _problem(
            409,
            "Request in progress",
            f"A request with this {KEY_HEADER} is still being processed.",
        )
        error.headers["Retry-After"] = "1"
        raise error
    if claim.state == "done" and claim.response is not None:
        return _replay(claim.response)
    response = as_response(operation, route)
    _settle(store, scope, key, response)
    return response


def request_fingerprint(fields: Mapping[str, Any]) -> str:
    """What makes two requests "the same" under one key: their fields, in any order."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _settle(store: Store, scope: str, key: str, response: func.HttpResponse) -> None:
    # Keep answers that must be repeated: successes, refusals that will not change, and a
    # timeout (Twilio may have sent it, so a retry must not send again). Release the key
    # when nothing was sent and a retry may succeed (rate limits, outages).
    status = response.status_code
    keep = (status < 500 and status != 429) or status == 504
    try:
        if keep:
            store.finish_key(scope, key, _stored(response))
        else:
            store.release_key(scope, key)
    except StoreUnavailable:
        logger.error(
            "Could not record the outcome for an idempotency key; it expires in %ss", LEASE_SECONDS
        )


def _stored(response: func.HttpResponse) -> StoredResponse:
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() != "content-type")
    return StoredResponse(
        status_code=response.status_code,
        body=response.get_body().decode(),
        content_type=response.mimetype,
        headers=headers,
    )


def _replay(stored: StoredResponse) -> func.HttpResponse:
    return func.HttpResponse(
        stored.body,
        status_code=stored.status_code,
        headers={**dict(stored.headers), "Idempotent-Replayed": "true"},
        mimetype=stored.content_type,
    )


def _problem(status: int, title: str, detail: str) -> AppError:
    error = AppError(detail, status_code=status, title=title)
    error.problem_type = _PROBLEM
    return error
