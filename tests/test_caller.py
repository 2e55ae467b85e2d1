"""Who is calling, in function-key mode: the key presented, else the address (IPv6: /64)."""

from __future__ import annotations

import hashlib

import azure.functions as func
import pytest

from shared.caller import client_address, identify_caller, mobile_auth_level
from shared.settings import load_settings
from tests.conftest import (
    PUBLIC_BASE_URL,
    VALID_TO,
    FakeClock,
    Handler,
    SetEnv,
    body_of,
    build_request,
)

SMS_URL = f"{PUBLIC_BASE_URL}/api/SendSms"
KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"


def key_id(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.7:50123", "ip:203.0.113.7"),
        ("198.51.100.1, 203.0.113.7:50123", "ip:203.0.113.7"),  # the client wrote the first
        ("[2001:db8:1:2::1]:443", "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "ip:2001:db8:1:2::/64"),  # same subscriber, same caller
        ("[::ffff:203.0.113.7]:443", "ip:203.0.113.7"),
        ("203.0.113.7", "ip:203.0.113.7"),
        ("", "ip:unknown"),
    ],
)
def test_caller_is_the_hop_the_platform_appended(forwarded: str, expected: str) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert client_address(build_request(headers=headers)) == expected


@pytest.mark.parametrize(
    ("url", "headers", "expected"),
    [
        (SMS_URL, {"x-functions-key": KEY_A}, key_id(KEY_A)),
        (f"{SMS_URL}?code={KEY_A}", {}, key_id(KEY_A)),
        (f"{SMS_URL}?Code={KEY_A}&code={KEY_B}", {}, key_id(KEY_A)),  # the host takes the first
        (f"{SMS_URL}?code={KEY_B}", {"x-functions-key": KEY_A}, key_id(KEY_A)),  # header first
        (SMS_URL, {"x-functions-key": f"{KEY_A}, {KEY_B}"}, key_id(KEY_A)),  # a repeated header
        (f"{SMS_URL}?to=x&code=&code={KEY_B}", {}, key_id(KEY_B)),  # only a non-empty `code`
        (SMS_URL, {}, "ip:203.0.113.7"),  # no key (a local host that checks none)
    ],
)
def test_a_function_key_caller_is_the_key_it_presented(
    url: str, headers: dict[str, str], expected: str
) -> None:
    request = build_request(url=url, headers={**headers, "X-Forwarded-For": "203.0.113.7:1"})
    caller = identify_caller(request, load_settings({}))
    assert caller.id == expected
    assert KEY_A not in caller.id and KEY_B not in caller.id


def test_moving_networks_keeps_the_caller_and_its_idempotency_key(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> None:
    payload = {"to": VALID_TO, "body": "once"}

    def send(address: str) -> tuple[int, str]:
        response = functions["SendSms"](
            build_request(
                "POST", SMS_URL, json_body=payload,
                headers={"x-functions-key": KEY_A, "X-Forwarded-For": address,
                         "Idempotency-Key": "k1"},
            )
        )  # fmt: skip
        return response.status_code, response.headers.get("Idempotent-Replayed", "")

    assert send("203.0.113.7:1") == (201, "")  # on Wi-Fi
    assert send("[2001:db8:9::1]:2") == (201, "true")  # on mobile data: the same caller


def test_a_key_sees_only_what_it_created(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> None:
    sent = functions["SendSms"](
        build_request("POST", SMS_URL, json_body={"to": VALID_TO, "body": "x"},
                      headers={"x-functions-key": KEY_A})
    )  # fmt: skip
    sid = body_of(sent)["sid"]

    def read(headers: dict[str, str]) -> int:
        request = build_request(
            "GET", f"{PUBLIC_BASE_URL}/api/messages/{sid}", headers=headers,
            route_params={"sid": sid},
        )  # fmt: skip
        return int(functions["MessageStatus"](request).status_code)

    assert read({"x-functions-key": KEY_A}) == 200
    assert read({"x-functions-key": KEY_B}) == 404  # another key holder: as if it did not exist
    assert read({"X-Forwarded-For": "203.0.113.7:1"}) == 404


def test_each_key_has_its_own_quota(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> None:
    app_env(LIMIT_PER_CALLER="2/hour")

    def send(key: str, to: str) -> int:
        request = build_request(
            "POST", SMS_URL, json_body={"to": to, "body": "x"},
            headers={"x-functions-key": key, "X-Forwarded-For": "203.0.113.7:1"},
        )  # fmt: skip
        return int(functions["SendSms"](request).status_code)

    assert [send(KEY_A, f"+1415555010{i}") for i in range(3)] == [201, 201, 429]
    assert send(KEY_B, "+14155550109") == 201  # same address, another key: its own quota


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (None, func.AuthLevel.FUNCTION),
        ("function-key", func.AuthLevel.FUNCTION),
        (" Function-Key ", func.AuthLevel.FUNCTION),
        ("jwt", func.AuthLevel.ANONYMOUS),
        ("EasyAuth", func.AuthLevel.ANONYMOUS),
    ],
)
def test_mobile_routes_need_a_host_key_only_in_function_key_mode(
    monkeypatch: pytest.MonkeyPatch, value: str | None, level: func.AuthLevel
) -> None:
    if value is None:
        monkeypatch.delenv("CALLER_AUTH", raising=False)
    else:
        monkeypatch.setenv("CALLER_AUTH", value)
    assert mobile_auth_level() == level
