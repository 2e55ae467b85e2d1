"""The one place that decides how we reach Twilio.

One client per process (a new Client means a new connection pool and TLS handshakes),
a finite timeout (twilio-python's default is none), a pool sized to the worker's thread
count, retries only for connections that failed before anything was sent (a retried
create after a timeout can send an SMS twice), and an optional API base URL so the same
code talks to the local sandbox or any Twilio-compatible stand-in.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared import telemetry
from shared.settings import Settings

if TYPE_CHECKING:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.http.response import Response
    from twilio.rest import Client

CONNECT_RETRIES = 2

# twilio-python logs every request URL and its parameters (phone numbers, message
# bodies) at INFO on this logger; that must never reach Application Insights.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
# urllib3 logs each request line, query string included (Twilio's list calls filter by To
# and From), at DEBUG: a log level raised for debugging must not export phone numbers.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


def get_client(settings: Settings) -> Client:
    """The process-wide client for these settings (rebuilt only if settings change)."""
    return _client_for(settings)


@functools.lru_cache(maxsize=1)
def _client_for(settings: Settings) -> Client:
    return build_client(settings)


def build_client(settings: Settings, http_client: Any = None) -> Client:
    # Imported here: twilio.rest and requests cost more than the whole TwiML path.
    from twilio.rest import Client

    account_sid = settings.require("TWILIO_ACCOUNT_SID")
    if settings.api_key_sid and settings.api_key_secret:
        username, password = settings.api_key_sid, settings.api_key_secret.reveal()
    else:
        username, password = account_sid, settings.require("TWILIO_AUTH_TOKEN")
    return Client(
        username=username,
        password=password,
        account_sid=account_sid,
        http_client=http_client or build_http_client(settings),
    )


def build_http_client(settings: Settings) -> TwilioHttpClient:
    from requests.adapters import HTTPAdapter
    from twilio.http.http_client import TwilioHttpClient
    from urllib3.util.retry import Retry

    class PooledHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
            target = _rebase(url, settings.twilio_api_base_url)
            with telemetry.twilio_call(method, target) as call:
                response = super().request(method, target, *args, **kwargs)
                call.answered(response.status_code, response.text)
                return response

    client = PooledHttpClient(timeout=settings.twilio_timeout)
    # connect retries only: urllib3 never retries a POST whose request may have been sent.
    retry = Retry(
        total=CONNECT_RETRIES,
        connect=CONNECT_RETRIES,
        read=0,
        status=0,
        other=0,
        redirect=0,
        backoff_factor=0.1,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(
        pool_connections=1, pool_maxsize=settings.worker_threads, max_retries=retry
    )
    assert client.session is not None
    client.session.mount("https://", adapter)
    client.session.mount("http://", adapter)
    return client


TOO_MANY_REQUESTS = 20429  # Twilio's concurrency limit: "never processed, safe to retry"


def with_rate_limit_retry[T](settings: Settings, operation: Callable[[], T]) -> T:
    """Run a Twilio create, retrying only on 20429: Twilio did not process those requests.
    Other 429s (21611, a sender's full queue) drain over minutes: retrying in a second
    only adds requests."""
    from twilio.base.exceptions import TwilioRestException

    attempt = 0
    while True:
        try:
            return operation()
        except TwilioRestException as exc:
            if exc.code != TOO_MANY_REQUESTS or attempt >= settings.rate_limit_retries:
                raise
            time.sleep(settings.rate_limit_backoff * 2**attempt)
            attempt += 1


def _rebase(url: str, base_url: str | None) -> str:
    if not base_url:
        return url
    parts = urlsplit(url)
    return f"{base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")
