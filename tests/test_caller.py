from __future__ import annotations

import pytest

from shared.caller import client_address
from tests.conftest import build_request


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.7:50123", "ip:203.0.113.7"),
        ("198.51.100.1, 203.0.113.7:50123", "ip:203.0.113.7"),  # the client wrote the first
        ("[2001:db8::1]:443", "ip:2001:db8::1"),
        ("2001:db8::1", "ip:2001:db8::1"),
        ("203.0.113.7", "ip:203.0.113.7"),
        ("", "ip:unknown"),
    ],
)
def test_caller_is_the_hop_the_platform_appended(forwarded: str, expected: str) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert client_address(build_request(headers=headers)) == expected
