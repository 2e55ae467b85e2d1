"""Idempotency-Key (IETF httpapi idempotency-key draft): a create happens at most once.

A mobile app on a flaky network retries. With the same key and the same request within
24 hours it gets the first answer again and Twilio is asked once; a different request
under the same key is 422.

Twilio's creates take no idempotency key, so a create whose answer was lost (a timeout,
a connection reset after the request went out, a Twilio 5xx, a crash of this process)
has an unknown outcome. Its key stays claimed, with what was asked for and when, and a
retry asks Twilio (shared/reconcile.py): if the message or call exists, the retry gets
it as the answer; only when Twilio provably has none is it sent again. A repeat while
the first attempt still runs is 409 with Retry-After; so is a retry of an unknown
outcome that Twilio might still be processing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import azure.functions as func

from shared import clock, parallel, twilio_errors
from shared.errors import AppError
from shared.http_io import failure_response, json_response
from shared.settings import Settings
from shared.store import (
    Accepted,
    Attempt,
    IdempotencyRecord,
    Store,
    StoredResponse,
    StoreUnavailable,
    Versioned,
)

KEY_HEADER = "Idempotency-Key"
KEY_TTL_SECONDS = 24 * 3600
FUNCTION_TIMEOUT_SECONDS = 120  # host.json functionTimeout (a test keeps them equal)
# No invocation lives longer than the function timeout: after it and a margin, a holder
# that never settled its key crashed, and its attempt's outcome is unknown.
LEASE_SECONDS = FUNCTION_TIMEOUT_SECONDS + 30
# After an attempt's answer was lost, Twilio may still be working on the request for as
# long as our client would have waited, and then some: not "provably none" before that.
SETTLE_MARGIN_SECONDS = 20
MAX_KEY_LENGTH = 255
_PROBLEM = "urn:twilio-functions:problem:idempotency"
_STILL_RUNNING = "A request with this Idempotency-Key is still being processed."

ClaimState = Literal["new", "in_flight", "unknown", "done", "mismatch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Creation:
    """A create under a key: what it asks for, how to make it, how to find it at Twilio.
    `find` returns None when Twilio has none."""

    intent: Attempt  # started_at and owner are filled in per attempt
    create: Callable[[Attempt], Accepted]
    find: Callable[[Attempt], Accepted | None]


@dataclass(frozen=True)
class Answer:
    """What a request under a key gets: its own create's answer, or (replayed) an earlier
    request's, or what was found at Twilio for an earlier attempt whose answer was lost."""

    stored: StoredResponse
    replayed: bool


class Busy(Exception):
    """The key is held by an attempt still running, or whose outcome cannot be known yet."""

    def __init__(self, retry_after: float, detail: str) -> None:
        super().__init__(detail)
        self.retry_after, self.detail = retry_after, detail


class Mismatch(Exception):
    """The key was used with a different request."""


# How a create that raised is answered, and what that means for the message or call.
Failure = Callable[[Exception], tuple[StoredResponse, twilio_errors.Outcome]]


def idempotent(
    req: func.HttpRequest,
    route: str,
    fields: Mapping[str, Any],
    store: Store,
    settings: Settings,
    caller: str,
    creation: Creation,
) -> func.HttpResponse:
    """Create once per (caller, route, Idempotency-Key); answer retries with what happened."""
    key = req.headers.get(KEY_HEADER)
    now = clock.now()

    def failure(exc: Exception) -> tuple[StoredResponse, twilio_errors.Outcome]:
        return _stored(failure_response(exc, route)), twilio_errors.outcome(exc)

    if key is None:
        return _run(creation, replace(creation.intent, started_at=now, owner=""), route)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        detail = f"{KEY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."
        raise _problem(400, "Bad Request", detail)
    scope = f"{caller}|{route}"
    try:
        answer = once(
            store, settings, scope, key, request_fingerprint(fields), creation, now, failure
        )
    except Mismatch:
        detail = f"This {KEY_HEADER} was used with a different request."
        raise _problem(422, "Idempotency-Key reused", detail) from None
    except Busy as busy:
        raise _in_progress(busy.retry_after, busy.detail) from None
    except StoreUnavailable:
        if not settings.store_fail_open:
            raise
        logger.warning("State store unavailable: %s runs without idempotency (fail open)", route)
        return _run(creation, replace(creation.intent, started_at=now, owner=""), route)
    return _response(answer)


def once(
    store: Store,
    settings: Settings,
    scope: str,
    key: str,
    fingerprint: str,
    creation: Creation,
    now: float,
    failure: Failure,
) -> Answer:
    """The create, at most once per key; raises Mismatch or Busy. HTTP-free: the routes
    and the broadcast's send activity both go through here."""
    attempt = replace(creation.intent, started_at=now, owner=_owner(scope, key))
    state, record, held = claim(store, scope, key, fingerprint, attempt, now)
    if state == "mismatch":
        raise Mismatch()
    if state == "done":
        assert record is not None and record.response is not None
        return Answer(record.response, replayed=True)
    if state == "new":
        return _attempt(store, scope, key, creation, attempt, failure, held)
    assert record is not None and record.attempt is not None
    return _recover(store, settings, scope, key, creation, state, held, attempt, failure)


def request_fingerprint(fields: Mapping[str, Any]) -> str:
    """What makes two requests "the same" under one key: their fields, in any order."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def decide(record: IdempotencyRecord | None, fingerprint: str, now: float) -> ClaimState:
    """What a request with this key should do, given what is stored."""
    if record is None or record.expires_at <= now:
        return "new"
    if record.fingerprint != fingerprint:
        return "mismatch"
    if record.response is not None:
        return "done"
    if record.unknown or record.lease_until <= now:
        return "unknown" if record.attempt is not None else "new"
    return "in_flight"


def claim(
    store: Store, scope: str, key: str, fingerprint: str, attempt: Attempt, now: float
) -> tuple[ClaimState, IdempotencyRecord | None, Versioned]:
    """Claim the key for `attempt` if it is free: what to do, what was stored before, and
    what is stored now (to settle the key with one conditional write)."""
    decided: list[tuple[ClaimState, IdempotencyRecord | None]] = []

    def change(current: IdempotencyRecord | None) -> IdempotencyRecord | None:
        decided.clear()
        state = decide(current, fingerprint, now)
        decided.append((state, current))
        if state != "new":
            return None
        expires, lease = now + KEY_TTL_SECONDS, now + LEASE_SECONDS
        return IdempotencyRecord(fingerprint, expires, lease, attempt=attempt)

    held = store.update_key(scope, key, change)
    state, previous = decided[0]
    return state, previous, held


def _attempt(
    store: Store,
    scope: str,
    key: str,
    creation: Creation,
    attempt: Attempt,
    failure: Failure,
    held: Versioned,
) -> Answer:
    """Create, then settle the key by what became of it."""
    try:
        accepted = creation.create(attempt)
    except Exception as exc:
        stored, outcome = failure(exc)
        if outcome == "unknown":
            settle(store, scope, key, attempt, lambda r: replace(r, unknown=True), held)
        elif outcome == "not-sent":  # a retry may well succeed: it must be able to send
            settle(store, scope, key, attempt, lambda r: replace(r, expires_at=0.0), held)
        else:  # refused for good: the same answer every time
            settle(store, scope, key, attempt, lambda r: replace(r, response=stored), held)
        return Answer(stored, replayed=False)
    return Answer(_settle_accepted(store, scope, key, attempt, accepted, held), replayed=False)


def _settle_accepted(
    store: Store, scope: str, key: str, attempt: Attempt, accepted: Accepted, held: Versioned
) -> StoredResponse:
    """Record the create and settle the key with its answer, both at once."""
    stored = StoredResponse(201, json.dumps(accepted.body), "application/json")
    parallel.both(
        accepted.record,
        lambda: settle(store, scope, key, attempt, lambda r: replace(r, response=stored), held),
        beside=store.remote,
    )
    return stored


def _recover(
    store: Store,
    settings: Settings,
    scope: str,
    key: str,
    creation: Creation,
    state: ClaimState,
    held: Versioned,
    attempt: Attempt,
    failure: Failure,
) -> Answer:
    """A retry while an attempt runs or after its answer was lost: find it, or wait, or
    (when Twilio provably has none and the attempt can no longer land) send again."""
    record = held.record
    assert record is not None and record.attempt is not None
    prior = record.attempt
    now = attempt.started_at
    running_normally = now - prior.started_at < settings.twilio_timeout + 5
    if state == "in_flight" and running_normally:
        raise Busy(1, _STILL_RUNNING)
    try:
        found = creation.find(prior)
    except Exception as exc:
        logger.warning("Could not look up an earlier attempt at Twilio: %s", type(exc).__name__)
        raise Busy(
            5, "An earlier attempt's outcome is unknown and Twilio cannot be asked right now."
        ) from None
    if found is not None:
        return Answer(_settle_accepted(store, scope, key, prior, found, held), replayed=True)
    if state == "in_flight":
        raise Busy(
            record.lease_until - now,
            "A request with this Idempotency-Key is still being processed.",
        )
    settled_at = prior.started_at + settings.twilio_timeout + SETTLE_MARGIN_SECONDS
    if now < settled_at:
        raise Busy(
            settled_at - now,
            "An earlier attempt's outcome is unknown and Twilio may still accept it; "
            "retry after Retry-After to let the app check again.",
        )
    taken = _take_over(store, scope, key, prior, attempt)
    if taken is None:
        raise Busy(1, "Another retry with this Idempotency-Key is being processed.")
    logger.info("Twilio has no record of an earlier attempt; sending again")
    return _attempt(store, scope, key, creation, attempt, failure, taken)


def _run(creation: Creation, attempt: Attempt, route: str) -> func.HttpResponse:
    try:
        accepted = creation.create(attempt)
    except Exception as exc:
        return failure_response(exc, route)
    accepted.record()
    return json_response(accepted.body, status_code=201)


def settle(
    store: Store,
    scope: str,
    key: str,
    attempt: Attempt,
    outcome: Callable[[IdempotencyRecord], IdempotencyRecord],
    held: Versioned | None = None,
) -> None:
    """Record the outcome, if the key still holds this attempt (a retry may have taken over
    after this one's lease ran out; then this one's outcome is no longer the key's). With
    the key as it was `held` (claimed), one conditional write; read first only if the key
    changed since."""

    def change(current: IdempotencyRecord | None) -> IdempotencyRecord | None:
        if current is None or current.attempt != attempt:
            return None
        return outcome(current)

    try:
        if not _replace_held(store, scope, key, attempt, outcome, held):
            store.update_key(scope, key, change)
    except StoreUnavailable:
        # The lease runs out, the outcome is then unknown, and a retry asks Twilio.
        logger.error("Could not record an outcome for an idempotency key; it is settled later")


def _replace_held(
    store: Store,
    scope: str,
    key: str,
    attempt: Attempt,
    outcome: Callable[[IdempotencyRecord], IdempotencyRecord],
    held: Versioned | None,
) -> bool:
    """Settle with one conditional write over the key as it was held; False if it was not
    held by `attempt` or changed since."""
    if held is None or held.version is None or held.record is None:
        return False
    if held.record.attempt != attempt:
        return False
    return store.replace_key(scope, key, outcome(held.record), held.version)


def _take_over(
    store: Store, scope: str, key: str, prior: Attempt, attempt: Attempt
) -> Versioned | None:
    """Replace the prior attempt with a new one, unless another retry did it first (None)."""
    won: list[bool] = []

    def change(current: IdempotencyRecord | None) -> IdempotencyRecord | None:
        won.clear()
        if current is None or current.attempt != prior or current.response is not None:
            won.append(False)
            return None
        won.append(True)
        lease = attempt.started_at + LEASE_SECONDS
        return replace(current, attempt=attempt, unknown=False, lease_until=lease)

    taken = store.update_key(scope, key, change)
    return taken if won[0] else None


def _owner(scope: str, key: str) -> str:
    return hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()[:32]


def _stored(response: func.HttpResponse) -> StoredResponse:
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() != "content-type")
    return StoredResponse(
        status_code=response.status_code,
        body=response.get_body().decode(),
        content_type=response.mimetype,
        headers=headers,
    )


def _response(answer: Answer) -> func.HttpResponse:
    stored = answer.stored
    replayed = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    return func.HttpResponse(
        stored.body,
        status_code=stored.status_code,
        headers={**dict(stored.headers), **replayed},
        mimetype=stored.content_type,
    )


def _in_progress(retry_after: float, detail: str) -> AppError:
    error = _problem(409, "Request in progress", detail)
    error.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return error


def _problem(status: int, title: str, detail: str) -> AppError:
    error = AppError(detail, status_code=status, title=title, extra={"rule": "idempotency-key"})
    error.problem_type = _PROBLEM
    return error
