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
        (429, 21211, 422, "not-sent"),  # a 429 was never processed, whatever its code says
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


TWILIO = "urn:twilio-functions:problem:twilio"
UNKNOWN = (
    "Twilio answered with an error, which does not say whether it accepted the request: the "
    "message or call may have been sent. Retry with the same Idempotency-Key: the app then "
    "asks Twilio before it sends again."
)
MISCONFIGURED = ("about:blank", 500, "Server misconfigured")


@pytest.mark.parametrize(
    ("status", "code", "problem", "detail", "extra", "headers"),
    [
        (400, 21211, (TWILIO, 422, "Invalid 'to' phone number"), "Twilio error 21211: Invalid 'to' phone number.", {"twilioCode": 21211}, {}),
        (400, 21408, (TWILIO, 403, "Sending to this region is not enabled"), "Twilio error 21408: Sending to this region is not enabled.", {"twilioCode": 21408}, {}),
        (429, 21611, (TWILIO, 503, "The sender's outgoing queue is full"), "Twilio error 21611: The sender's outgoing queue is full.", {"twilioCode": 21611}, {"Retry-After": "60"}),
        (429, 20429, (TWILIO, 503, "Twilio is rate limiting us"), "Too many concurrent requests to Twilio; try again shortly.", {"twilioCode": 20429}, {"Retry-After": "1"}),
        (429, None, (TWILIO, 503, "Twilio is rate limiting us"), "Too many concurrent requests to Twilio; try again shortly.", {}, {"Retry-After": "1"}),
        (400, 21606, MISCONFIGURED, "Twilio rejected the configured sender.", {"twilioCode": 21606}, {}),
        (401, 20003, MISCONFIGURED, "The server could not use its Twilio account.", {}, {}),
        (403, 20003, MISCONFIGURED, "The server could not use its Twilio account.", {}, {}),
        (404, 20404, MISCONFIGURED, "The server could not use its Twilio account.", {}, {}),
        (405, None, (TWILIO, 422, "Twilio rejected the request"), "Twilio rejected the request (error None).", {}, {}),
        (500, 20500, (TWILIO, 502, "Twilio failed"), UNKNOWN, {"twilioCode": 20500, "outcome": "unknown"}, {}),
        (400, 99999, (TWILIO, 422, "Twilio rejected the request"), "Twilio rejected the request (error 99999).", {"twilioCode": 99999}, {}),
    ],
)  # fmt: skip
def test_each_twilio_error_gets_its_own_problem(
    status: int,
    code: int | None,
    problem: tuple[str, int, str],
    detail: str,
    extra: dict[str, object],
    headers: dict[str, str],
) -> None:
    error = from_twilio_exception(twilio(status, code))
    assert (error.problem_type, error.status_code, error.title) == problem
    assert (error.detail, error.extra, error.headers) == (detail, extra, headers)


def test_a_code_that_is_not_a_number_is_not_passed_on() -> None:
    error = from_twilio_exception(
        TwilioRestException(400, "https://api.twilio.com/x", code="21211")
    )
    assert (error.status_code, error.title, error.extra) == (422, "Twilio rejected the request", {})


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
        (  # only a ConnectionError tells of a connection never made, whatever it carries
            requests.ReadTimeout(MaxRetryError(NO_POOL, "/x", NewConnectionError(NO_POOL, "x"))),
            504,
            "Twilio timed out",
            "unknown",
        ),
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
        (AppError("a failure of ours"), "not-sent"),  # 500: before Twilio was asked
        (AppError("unavailable", status_code=503), "not-sent"),
        (RuntimeError("a bug after Twilio answered"), "unknown"),  # assume it may have sent
    ],
)
def test_our_own_failures(exc: Exception, result: str) -> None:
    assert outcome(exc) == result


def test_a_connection_lost_after_sending_says_the_message_may_have_been_sent() -> None:
    error = from_transport_exception(reset_after_sending())
    assert error is not None
    assert error.detail == (
        "The connection to Twilio broke after the request was sent: the message or call may "
        "have been sent. Retry with the same Idempotency-Key: the app then asks Twilio before "
        "it sends again."
    )
