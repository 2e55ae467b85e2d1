"""What a failure on the way to Twilio means: the HTTP answer, and whether it was sent."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from shared.errors import AppError
from shared.store import StoreUnavailable
from shared.twilio_errors import from_transport_exception, from_twilio_exception, outcome


def twilio(status: int, code: int | None) -> TwilioRestException:
    return TwilioRestException(status, "https://api.twilio.com/x", code=code)


@pytest.mark.parametrize(
    ("status", "code", "answer", "result"),
    [
        (400, 21211, 422, "refused"),
        (400, 21408, 403, "refused"),
        (400, 21610, 409, "refused"),
        (429, 21611, 503, "not-sent"),  # the queue is full: nothing queued
        (429, 20429, 503, "not-sent"),  # "never processed"
        (400, 21606, 500, "not-sent"),  # our sender is misconfigured: fixable, then sends
        (400, 21701, 500, "not-sent"),  # a Messaging Service that does not exist
        (400, 21705, 500, "not-sent"),  # an invalid Messaging Service SID
        (401, 20003, 500, "not-sent"),
        (500, 20500, 502, "unknown"),  # a 5xx does not say whether Twilio took it
        (503, None, 502, "unknown"),
        (400, 99999, 422, "refused"),
    ],
)
def test_twilio_errors(status: int, code: int | None, answer: int, result: str) -> None:
    exc = twilio(status, code)
    assert (from_twilio_exception(exc).status_code, outcome(exc)) == (answer, result)


def reset_after_sending() -> requests.ConnectionError:
    return requests.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))
    )


# urllib3 wants its connection pool in these exceptions; nothing here reads it.
NO_POOL: Any = None


def refused_to_connect() -> requests.ConnectionError:
    pool_error = NewConnectionError(NO_POOL, "Failed to establish a new connection")
    return requests.ConnectionError(MaxRetryError(NO_POOL, "/x", pool_error))


@pytest.mark.parametrize(
    ("exc", "answer", "title", "result"),
    [
        (refused_to_connect(), 502, "Twilio unreachable", "not-sent"),
        (
            requests.ConnectTimeout(MaxRetryError(NO_POOL, "/x", ConnectTimeoutError())),
            502,
            "Twilio unreachable",
            "not-sent",
        ),
        (reset_after_sending(), 502, "Twilio connection lost", "unknown"),
        (
            requests.ReadTimeout(ReadTimeoutError(NO_POOL, "/x", "read timed out")),
            504,
            "Twilio timed out",
            "unknown",
        ),
    ],
)
def test_transport_failures_say_whether_anything_was_sent(
    exc: Exception, answer: int, title: str, result: str
) -> None:
    error = from_transport_exception(exc)
    assert error is not None
    assert (error.status_code, error.title, error.extra["outcome"], outcome(exc)) == (
        answer, title, result, result,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "result"),
    [
        (AppError("over the limit", status_code=429), "not-sent"),
        (StoreUnavailable(), "not-sent"),
        (AppError("opted out", status_code=409), "refused"),
        (RuntimeError("a bug after Twilio answered"), "unknown"),  # assume it may have sent
    ],
)
def test_our_own_failures(exc: Exception, result: str) -> None:
    assert outcome(exc) == result
