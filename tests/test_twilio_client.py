from __future__ import annotations

import logging

import pytest
from twilio.base.exceptions import TwilioRestException

from shared.errors import MissingSetting
from shared.settings import load_settings
from shared.twilio_client import CONNECT_RETRIES, build_client, get_client, with_rate_limit_retry
from tests.conftest import ACCOUNT_SID

ENV = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_TIMEOUT_SECONDS": "7",
}


def test_one_client_per_settings() -> None:
    settings = load_settings(ENV)
    assert get_client(settings) is get_client(load_settings(ENV))
    assert get_client(load_settings({**ENV, "TWILIO_TIMEOUT_SECONDS": "8"})) is not get_client(
        settings
    )


def test_finite_timeout_and_pool_sized_to_worker_threads() -> None:
    client = build_client(load_settings({**ENV, "PYTHON_THREADPOOL_THREAD_COUNT": "24"}))
    http = client.http_client
    assert http.timeout == 7.0
    adapter = http.session.get_adapter("https://api.twilio.com")
    assert adapter._pool_maxsize == 24
    retry = adapter.max_retries
    # Only connections that failed before anything was sent are retried.
    assert (retry.total, retry.connect, retry.read, retry.status, retry.other) == (
        CONNECT_RETRIES, CONNECT_RETRIES, 0, 0, 0,
    )  # fmt: skip


def test_twilio_request_logging_is_turned_down() -> None:
    assert logging.getLogger("twilio.http_client").getEffectiveLevel() >= logging.WARNING


def test_credentials_are_required_to_build_a_client() -> None:
    with pytest.raises(MissingSetting) as raised:
        build_client(load_settings({"TWILIO_ACCOUNT_SID": ACCOUNT_SID}))
    assert raised.value.key == "TWILIO_AUTH_TOKEN"


def test_api_key_pair_is_preferred_over_the_auth_token() -> None:
    client = build_client(
        load_settings({**ENV, "TWILIO_API_KEY_SID": "SK" + "1" * 32, "TWILIO_API_KEY_SECRET": "s"})
    )
    assert (client.username, client.password, client.account_sid) == (
        "SK" + "1" * 32,
        "s",
        ACCOUNT_SID,
    )


def test_rate_limit_retry_retries_429_only() -> None:
    settings = load_settings(
        {"TWILIO_RATE_LIMIT_RETRIES": "2", "TWILIO_RATE_LIMIT_BACKOFF_SECONDS": "0"}
    )
    attempts: list[int] = []

    def rate_limited() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise TwilioRestException(429, "uri", code=20429)
        return "ok"

    assert with_rate_limit_retry(settings, rate_limited) == "ok"
    assert len(attempts) == 3

    def server_error() -> str:
        attempts.append(1)
        raise TwilioRestException(500, "uri")

    attempts.clear()
    with pytest.raises(TwilioRestException):
        with_rate_limit_retry(settings, server_error)
    assert len(attempts) == 1


def test_a_full_sender_queue_is_not_retried() -> None:
    # 21611 also arrives with HTTP 429, but the queue drains over minutes, not a second.
    settings = load_settings({"TWILIO_RATE_LIMIT_BACKOFF_SECONDS": "0"})
    attempts: list[int] = []

    def queue_full() -> str:
        attempts.append(1)
        raise TwilioRestException(429, "uri", code=21611)

    with pytest.raises(TwilioRestException):
        with_rate_limit_retry(settings, queue_full)
    assert len(attempts) == 1
