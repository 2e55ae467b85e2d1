"""Connection reuse and concurrency against an HTTPS Twilio stand-in on 127.0.0.1.

The stand-in's self-signed CA is trusted for the run only (REQUESTS_CA_BUNDLE), so the
production client does real TLS, and the stand-in counts TCP connections and handshakes.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import azure.functions as func
import requests
from requests.adapters import HTTPAdapter

from bench.app_env import PUBLIC_BASE_URL, app_environment
from bench.stand_ins import ACCOUNT_SID, CountingTwilio

SEQUENTIAL = 100
CONCURRENT_REQUESTS = 200
THREADS = 32
DELAY = 0.05

Handler = Callable[[func.HttpRequest], func.HttpResponse]


def _send(handler: Handler) -> int:
    body = json.dumps({"to": "+14155550100", "body": "Hello"}).encode()
    request = func.HttpRequest(
        "POST",
        f"{PUBLIC_BASE_URL}/api/SendSms",
        headers={"Content-Type": "application/json"},
        body=body,
    )
    return int(handler(request).status_code)


class _PoolFullCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Connection pool is full" in record.getMessage():
            self.count += 1


def reuse(send_sms: Handler) -> dict[str, Any]:
    """100 sequential SendSms: the shared client vs a new client per request (the old way)."""
    with tempfile.TemporaryDirectory() as tmp, CountingTwilio(Path(tmp)) as twilio:
        env = {"TWILIO_API_BASE_URL": twilio.url, "REQUESTS_CA_BUNDLE": str(twilio.ca_file)}
        results: dict[str, Any] = {}
        with app_environment(**env):
            statuses = [_send(send_sms) for _ in range(SEQUENTIAL)]
            results["shared client"] = _counts(twilio, statuses)
        twilio.reset()
        with app_environment(**env):
            from shared import messaging
            from shared.phone import to_e164
            from shared.policy import SmsSender
            from shared.settings import get_settings
            from shared.state import get_store
            from shared.twilio_client import build_client

            settings = get_settings()
            request = messaging.SmsRequest(
                to=to_e164("+14155550100"),
                body="Hello",
                sender=SmsSender(from_number="+15005550006"),
            )
            statuses = []
            for _ in range(SEQUENTIAL):  # as the tutorial did: a new client every invocation
                messaging.send_sms(
                    request, settings, build_client(settings), get_store(settings), "bench"
                )
                statuses.append(201)
            results["client per request"] = _counts(twilio, statuses)
    return results


def concurrency(send_sms: Handler) -> dict[str, Any]:
    """200 SendSms from 32 threads; Twilio answers after 50 ms. Ours with the pool sized to
    the worker threads, ours with requests' default pool of 10, and the floor: a bare
    requests.Session posting the same form from the same threads."""
    ideal = CONCURRENT_REQUESTS / THREADS * DELAY
    results: dict[str, Any] = {"ideal_seconds": ideal}
    with tempfile.TemporaryDirectory() as tmp, CountingTwilio(Path(tmp), delay=DELAY) as twilio:
        env = {"TWILIO_API_BASE_URL": twilio.url, "REQUESTS_CA_BUNDLE": str(twilio.ca_file)}
        for label, pool in (
            ("ours, pool = worker threads (32)", THREADS),
            ("ours, pool = 10 (requests' default)", 10),
        ):
            with app_environment(**env, PYTHON_THREADPOOL_THREAD_COUNT=str(pool)):
                results[label] = _timed(twilio, lambda: _send(send_sms))
        session = requests.Session()
        session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=THREADS))
        url = f"{twilio.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        form = {"To": "+14155550100", "From": "+15005550006", "Body": "Hello"}
        results["floor: bare requests.Session, pool 32"] = _timed(
            twilio,
            lambda: (
                session.post(url, data=form, verify=str(twilio.ca_file), timeout=10).status_code
            ),
        )
    return results


def _timed(twilio: CountingTwilio, send: Callable[[], int]) -> dict[str, Any]:
    """One untimed round (a warm instance has its connections open), then the timed 200."""
    twilio.reset()
    counter = _PoolFullCounter()
    logging.getLogger("urllib3.connectionpool").addHandler(counter)
    try:
        with ThreadPoolExecutor(THREADS) as threads:
            warm = list(threads.map(lambda _: send(), range(THREADS)))
            start = time.perf_counter()
            statuses = list(threads.map(lambda _: send(), range(CONCURRENT_REQUESTS)))
            elapsed = time.perf_counter() - start
    finally:
        logging.getLogger("urllib3.connectionpool").removeHandler(counter)
    return {
        **_counts(twilio, warm + statuses),
        "elapsed_seconds": elapsed,
        "throughput_vs_ideal": CONCURRENT_REQUESTS / THREADS * DELAY / elapsed,
        "pool_full_warnings": counter.count,
    }


def _counts(twilio: CountingTwilio, statuses: list[int]) -> dict[str, Any]:
    if set(statuses) != {201}:
        raise RuntimeError(f"SendSms answered {sorted(set(statuses))}")
    return twilio.counts()
