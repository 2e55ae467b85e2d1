"""End to end over real sockets: the local host serving function_app, with the sandbox."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from devhost.__main__ import azurite_if, load_local_settings, sandbox_config, sandbox_settings
from devhost.host import _decoded_path, compile_route, from_rpc_http, to_rpc_http
from devhost.rpc import messages as rpc
from shared.settings import development_storage
from tests.conftest import (
    ACCOUNT_SID,
    APP_SETTING_KEYS,
    AUTH_TOKEN,
    ROOT,
    VALID_TO,
    DevHost,
    free_port,
    start_devhost,
)


def test_health_in_sandbox_mode(devhost: DevHost) -> None:
    response = requests.get(f"{devhost.url}/api/health", timeout=10)
    assert response.status_code == 200
    # The worker sets the content type from the mimetype, without a charset for JSON.
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ok",
        "twilio": "sandbox",
        "state": "memory",
        "publicBaseUrl": devhost.url,
    }


def test_send_sms_appears_in_the_sandbox(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/SendSms", json={"to": VALID_TO, "body": "over the wire"}, timeout=10
    )
    assert response.status_code == 201
    sid = response.json()["sid"]
    [message] = [m for m in devhost.sandbox.messages() if m["sid"] == sid]
    assert (message["to"], message["from"], message["body"]) == (
        VALID_TO,
        "+15005550006",
        "over the wire",
    )


def test_call_fetches_signed_twiml_and_records_what_is_heard(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/MakeCall",
        json={"to": VALID_TO, "message": "Your code is 1 2 3 & more", "voice": "Polly.Joanna"},
        timeout=10,
    )
    assert response.status_code == 201
    call = devhost.sandbox.settled_call(response.json()["sid"])
    assert call["status"] == "completed"
    assert call["twiml_request"]["status"] == 200
    assert call["twiml_request"]["contentType"] == "application/xml"
    assert call["heard"] == [
        {"verb": "Say", "text": "Your code is 1 2 3 & more", "voice": "Polly.Joanna"}
    ]


def test_console_state_lists_the_debugger_alerts(devhost: DevHost) -> None:
    state = requests.get(f"{devhost.url}/sandbox/state", timeout=10).json()
    assert set(state) == {"messages", "calls", "alerts"}
    assert state["alerts"] == devhost.sandbox.alerts()


def test_unsigned_twiml_request_is_403(devhost: DevHost) -> None:
    response = requests.get(f"{devhost.url}/api/TwiML?message=hi", timeout=10)
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "Missing X-Twilio-Signature header."
    assert response.json()["rule"] == "twilio-signature"


def test_bad_input_over_http(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/SendSms",
        data=b"{broken",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert (response.status_code, response.json()["title"]) == (400, "Malformed JSON")
    response = requests.get(f"{devhost.url}/api/MakeCall", timeout=10)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert requests.get(f"{devhost.url}/api/nothing-here", timeout=10).status_code == 404


def test_magic_number_through_the_whole_stack(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.url}/api/SendSms", json={"to": "+15005550004", "body": "x"}, timeout=10
    )
    assert (response.status_code, response.json()["twilioCode"]) == (409, 21610)


def test_sandbox_requires_twilio_credentials(devhost: DevHost) -> None:
    url = f"{devhost.sandbox.url}/2010-04-01/Accounts/AC{'0' * 32}/Messages.json"
    response = requests.post(
        url, data={"To": VALID_TO, "From": "+15005550006", "Body": "x"}, timeout=10
    )
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_sandbox_mode_owns_the_configured_senders() -> None:
    config = sandbox_config(
        "token",
        False,
        {
            "TWILIO_FROM_NUMBER": "+1 415 555 0123",
            "TWILIO_MESSAGING_SERVICE_SID": "MG" + "c" * 32,
            "TWILIO_ALLOWED_SENDERS": "+14155550124, MG" + "d" * 32 + ",+1 nonsense",
        },
    )
    assert (config.owned_numbers, config.messaging_services, config.service_sender) == (
        frozenset({"+15005550006", "+14155550123", "+14155550124"}),
        frozenset({"MG" + "c" * 32, "MG" + "d" * 32}),
        "+14155550123",
    )
    bare = sandbox_config("token", True, {})
    assert (bare.owned_numbers, bare.messaging_services, bare.service_sender) == (
        frozenset({"+15005550006"}),
        frozenset(),
        "+15005550006",
    )
    assert bare.reach_internet is True


def test_sandbox_mode_defaults_only_what_the_user_left_unset() -> None:
    account = {
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "t0ken",
        "TWILIO_API_BASE_URL": "http://127.0.0.1:7072",
        "TWILIO_API_KEY_SID": "",
        "TWILIO_API_KEY_SECRET": "",
    }
    assert sandbox_settings({}, "t0ken", "http://127.0.0.1:7072") == {
        **account,
        "TWILIO_FROM_NUMBER": "+15005550006",
        "NUMBER_TYPE_EXCEPTIONS": "+1500555",
        "TWILIO_ALLOWED_SENDERS": "+15005550006,+15005550001,+15005550007,+15005550008",
        "LIMIT_PER_DESTINATION": "100/hour",
        "LIMIT_PER_CALLER": "1000/hour",
        "LIMIT_GLOBAL": "10000/day",
    }
    user = {
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,  # --sandbox with credentials: replaced
        "TWILIO_API_KEY_SID": "SK" + "1" * 32,
        "TWILIO_FROM_NUMBER": "+14155550123",
        "NUMBER_TYPE_EXCEPTIONS": "+1500",
        "TWILIO_ALLOWED_SENDERS": "+14155550124",
        "LIMIT_PER_DESTINATION": "5/hour",
        "LIMIT_PER_CALLER": "off",
        "LIMIT_GLOBAL": " ",  # empty counts as unset
    }
    assert sandbox_settings(user, "t0ken", "http://127.0.0.1:7072") == {
        **account,
        "LIMIT_GLOBAL": "10000/day",
    }


def test_the_sandbox_never_owns_twilios_magic_senders() -> None:
    config = sandbox_config(
        "token",
        False,
        {
            "TWILIO_FROM_NUMBER": "+15005550008",
            "TWILIO_ALLOWED_SENDERS": "+15005550006,+15005550001,+15005550007,+14155550124",
        },
    )
    assert (config.owned_numbers, config.service_sender) == (
        frozenset({"+15005550006", "+14155550124"}),
        "+15005550008",
    )


def test_sandbox_mode_answers_the_examples_again_and_again(devhost: DevHost) -> None:
    # The app's default limit is 5 an hour per destination; sandbox mode's is looser.
    answers = [
        requests.post(
            f"{devhost.url}/api/SendSms",
            json={"to": "+14155550160", "body": f"try {i}"},
            timeout=10,
        ).status_code
        for i in range(8)
    ]
    assert answers == [201] * 8


@pytest.mark.parametrize(
    ("route", "sender", "status", "code"),
    [
        ("SendSms", "+15005550006", 201, None),
        ("SendSms", "+15005550001", 500, 21212),
        ("SendSms", "+15005550007", 500, 21606),
        ("SendSms", "+15005550008", 503, 21611),
        ("MakeCall", "+15005550006", 201, None),
        ("MakeCall", "+15005550001", 500, 21212),
        ("MakeCall", "+15005550007", 500, 21210),
    ],
)
def test_sandbox_mode_lets_the_documented_test_senders_reach_the_sandbox(
    devhost: DevHost, route: str, sender: str, status: int, code: int | None
) -> None:
    # docs/sandbox.md offers these as `from`: the app's policy must not refuse them first (403).
    payload = {"to": "+14155550161", "from": sender, "body": "x", "message": "x"}
    if route == "MakeCall":
        del payload["body"]
    else:
        del payload["message"]
    response = requests.post(f"{devhost.url}/api/{route}", json=payload, timeout=10)
    assert (response.status_code, response.json().get("twilioCode")) == (status, code)


@pytest.mark.parametrize(
    "credentials",
    [{}, {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}],
    ids=["sandbox", "live"],
)
def test_bad_settings_stop_the_host_with_one_line_naming_them(
    tmp_path: Path, credentials: dict[str, str]
) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {**credentials, "LIMIT_GLOBAL": "banana"}}))
    env = {k: v for k, v in os.environ.items() if k not in APP_SETTING_KEYS}
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", "0", "--sandbox-port", "0",
         "--settings", str(settings)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "devhost: cannot start: setting LIMIT_GLOBAL must be N/second, N/minute, N/hour, N/day "
        "or off (in local.settings.json or the environment).\n",
    )


def test_azurite_on_the_port_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_STORE_CONNECTION", "UseDevelopmentStorage=true")
    port = free_port()
    with azurite_if(port, tmp_path):
        assert os.environ["STATE_STORE_CONNECTION"] == development_storage(port)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    with socket.socket() as probe:  # stopped with us
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_azurite_on_a_taken_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited, azurite_if(port, tmp_path):
            pass
    assert exited.value.code == (
        f"devhost: 127.0.0.1:{port} is taken (another Azurite?); pick another port with "
        "`make run AZURITE=1 AZURITE_PORT=…`."
    )


def test_sandbox_mode_sends_from_every_configured_sender() -> None:
    service = "MG" + "c" * 32
    host = start_devhost(
        {"TWILIO_FROM_NUMBER": "+14155550123", "TWILIO_ALLOWED_SENDERS": f"+14155550124,{service}"}
    )
    try:
        answers = [
            requests.post(f"{host.url}/api/SendSms", json=payload, timeout=10)
            for payload in (
                {"to": VALID_TO, "body": "x"},
                {"to": VALID_TO, "body": "x", "from": "+14155550124"},
                {"to": VALID_TO, "body": "x", "from": service},
            )
        ]
        assert [(a.status_code, a.json()["from"]) for a in answers] == [
            (201, "+14155550123"),
            (201, "+14155550124"),
            (201, None),  # a Messaging Service picks its sender after the answer
        ]
    finally:
        host.stop()


def test_local_settings_values_load_but_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"DEVHOST_TEST_A": "file", "DEVHOST_TEST_B": "file"}}))
    monkeypatch.setenv("DEVHOST_TEST_B", "env")
    monkeypatch.delenv("DEVHOST_TEST_A", raising=False)
    load_local_settings(path)
    assert (os.environ["DEVHOST_TEST_A"], os.environ["DEVHOST_TEST_B"]) == ("file", "env")
    monkeypatch.delenv("DEVHOST_TEST_A")


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        ("SendSms", "/api/SendSms", {}),
        ("SendSms", "/API/sendsms", {}),  # the host matches routes without regard to case
        ("SendSms", "/api/SendSms/", {}),
        ("messages/{sid}", "/api/messages/SM123", {"sid": "SM123"}),
        ("items/{id:int}", "/api/items/42", {"id": "42"}),
        ("SendSms", "/api/SendSmsX", None),
        ("SendSms", "/SendSms", None),
        ("messages/{sid}", "/api/messages/a/b", None),
        ("items/{id:int}", "/api/items/x", None),
    ],
)
def test_routes_match_as_the_host_matches_them(
    template: str, path: str, params: dict[str, str] | None
) -> None:
    match = compile_route("api", template).fullmatch(path)
    assert (match.groupdict() if match else None) == params


def test_unsupported_route_templates_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"\{id\?\} is not supported"):
        compile_route("api", "items/{id?}")


def test_requests_reach_the_worker_as_the_host_sends_them() -> None:
    headers = CIMultiDict(
        [("Host", "functions.example.com"), ("Accept", "a"), ("accept", "b"), ("X-Empty", "")]
    )
    raw = "/api/T%77iML/a%2Fb%20c?message=a&Message=b&blank=&x=1+2&code=k&e=%3D"
    request = make_mocked_request("GET", raw, headers=headers)
    http = to_rpc_http(request, _decoded_path(raw), b"", {"rest": "a%2Fb c"})
    # The query string byte for byte (Twilio signs it); the path decoded and re-escaped.
    assert http.url == (
        "http://functions.example.com/api/TwiML/a%2Fb%20c"
        "?message=a&Message=b&blank=&x=1+2&code=k&e=%3D"
    )
    # Keys without regard to case, values comma-joined, blank ones dropped, `code` kept.
    assert dict(http.query) == {"message": "a,b", "x": "1 2", "code": "k", "e": "="}
    assert dict(http.headers) == {
        "host": "functions.example.com",
        "accept": "a,b",
        "x-empty": "",
        "x-forwarded-for": "",
    }
    assert dict(http.params) == {"rest": "a%2Fb c"}
    assert not http.HasField("body")  # no Content-Length: the host sends no body


def test_a_body_goes_to_the_worker_as_bytes_whatever_its_type() -> None:
    headers = CIMultiDict([("Content-Type", "application/json"), ("Content-Length", "2")])
    request = make_mocked_request("POST", "/api/SendSms", headers=headers)
    http = to_rpc_http(request, "/api/SendSms", b"{}", {})
    assert (http.body.WhichOneof("data"), http.body.bytes) == ("bytes", b"{}")


def test_what_the_worker_returns_becomes_the_hosts_answer() -> None:
    answer = rpc.TypedData(
        http=rpc.RpcHttp(
            status_code="201",
            headers={"content-type": "application/json", "location": "/x"},
            body=rpc.TypedData(bytes=b'{"a": 1}'),
        )
    )
    response = from_rpc_http(answer, "f")
    assert (response.status, response.body, response.headers["Location"]) == (
        201,
        b'{"a": 1}',
        "/x",
    )
    assert response.headers["Content-Type"] == "application/json"
    nothing = from_rpc_http(None, "f")  # a function returning None: an empty 200
    assert (nothing.status, nothing.body) == (200, None)
    odd = from_rpc_http(rpc.TypedData(http=rpc.RpcHttp(status_code="x")), "f")
    assert odd.status == 200  # an unparsable status is 200, as the host's int.TryParse


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (
            {"Origin": "https://evil.example"},
            "Requests from other origins (web pages) are refused.",
        ),
        ({"Origin": "null"}, "Requests from other origins (web pages) are refused."),
        ({"Sec-Fetch-Site": "cross-site"}, "Requests from other sites (web pages) are refused."),
        ({"Sec-Fetch-Site": "same-site"}, "Requests from other sites (web pages) are refused."),
        (
            {"Host": "rebound.evil.example:7071"},
            "Host rebound.evil.example:7071 is not this local server's own name.",
        ),
    ],
)
def test_the_local_host_refuses_what_a_web_page_could_send(
    devhost: DevHost, headers: dict[str, str], detail: str
) -> None:
    before = len(devhost.sandbox.messages())
    response = requests.post(
        f"{devhost.url}/api/SendSms", json={"to": VALID_TO, "body": "drive-by"},
        headers=headers, timeout=10,
    )  # fmt: skip
    assert (response.status_code, response.json()) == (
        403,
        {
            "type": "urn:twilio-functions:problem:local-host",
            "title": "Refused by the local host",
            "status": 403,
            "detail": detail,
            "rule": "local-host",
        },
    )
    assert len(devhost.sandbox.messages()) == before


def test_the_sandbox_refuses_web_pages_too(devhost: DevHost) -> None:
    response = requests.post(
        f"{devhost.sandbox.url}/sandbox/reset",
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert (response.status_code, response.json()["rule"]) == (403, "local-host")


def test_the_console_and_programs_are_not_web_pages_from_elsewhere(devhost: DevHost) -> None:
    # The console posts same-origin; localhost is one of the host's own names.
    port = devhost.url.rsplit(":", 1)[1]
    for i, headers in enumerate(
        (
            {"Origin": devhost.url, "Sec-Fetch-Site": "same-origin"},
            {"Host": f"localhost:{port}"},
            {},
        )
    ):
        # Numbers of their own: the session's host keeps its per-destination limit.
        response = requests.post(
            f"{devhost.url}/api/SendSms", json={"to": f"+1415555017{i}", "body": "ok"},
            headers=headers, timeout=10,
        )  # fmt: skip
        assert response.status_code == 201, response.text


def test_a_timer_that_takes_a_durable_client_gets_the_stand_ins_or_answers_501() -> None:
    import asyncio
    from typing import Any, cast

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from devhost.host import add_admin_routes
    from devhost.worker import IndexedFunction, InProcessWorker, Invocation

    timer = IndexedFunction(
        "Cleanup",
        "Cleanup",
        (
            {"type": "timerTrigger", "name": "timer", "direction": "in"},
            {"type": "durableClient", "name": "client", "direction": "in"},
        ),
    )
    received: list[dict[str, Any]] = []

    class Worker:
        async def invoke(self, function: IndexedFunction, inputs: Any, **_: Any) -> Invocation:
            received.append({name: data.WhichOneof("data") for name, data in inputs.items()})
            received.append({"client": inputs["client"].string})
            return Invocation(succeeded=True)

    async def run_now(binding: Any) -> int:
        app = web.Application()
        add_admin_routes(app, cast(InProcessWorker, Worker()), [timer], binding)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return (await client.post("/admin/functions/Cleanup")).status

    assert asyncio.run(run_now(None)) == 501
    assert received == []
    assert asyncio.run(run_now(lambda origin: f"binding for {origin}")) == 202
    assert received[0] == {"timer": "json", "client": "string"}
    assert received[1]["client"].startswith("binding for http://127.0.0.1:")


def test_a_stop_that_hangs_still_ends_the_process_by_its_deadline() -> None:
    # A stop stuck for ever (here: a sleep that outlives the deadline, then SIGTERM's path
    # itself) must still end the process, with a line saying why, and its Azurite child.
    script = (
        "import signal, subprocess, sys, time\n"
        "import devhost.__main__ as host\n"
        "host.STOP_DEADLINE_SECONDS = 0.5\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "host._children.append(child)\n"
        "print(child.pid, flush=True)\n"
        "signal.signal(signal.SIGTERM, host._on_sigterm)\n"
        "try:\n"
        "    time.sleep(60)\n"
        "finally:\n"
        "    time.sleep(60)  # the orderly stop that never ends\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    child = int(process.stdout.readline())
    process.terminate()
    _, err = process.communicate(timeout=20)
    assert process.returncode == 1
    assert err.strip().splitlines()[-1] == "devhost: still stopping after 0.5 s; exiting now"
    assert _dead(child)  # killed: gone, or a zombie waiting for init to reap it


def _dead(pid: int) -> bool:
    for _ in range(100):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False
