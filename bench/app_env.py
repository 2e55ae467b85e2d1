"""The app's environment for in-process benchmarks: settings injected, caches reset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from bench.stand_ins import ACCOUNT_SID, AUTH_TOKEN

PUBLIC_BASE_URL = "https://functions.example.com"


def bench_environment(**overrides: str) -> dict[str, str]:
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": "+15005550006",
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        # Limits count every request; a benchmark sends thousands to one number.
        "LIMIT_PER_DESTINATION": "off",
        "LIMIT_PER_CALLER": "off",
        "LIMIT_GLOBAL": "off",
    }
    env.update(overrides)
    return env


@contextmanager
def app_environment(**overrides: str) -> Iterator[None]:
    from shared.settings import get_settings
    from shared.state import _store_for
    from shared.twilio_client import _client_for

    saved = dict(os.environ)
    os.environ.update(bench_environment(**overrides))
    for cache in (get_settings, _store_for, _client_for):
        cache.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for cache in (get_settings, _store_for, _client_for):
            cache.cache_clear()
