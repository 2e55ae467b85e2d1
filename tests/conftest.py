"""Shared fixtures: request builder, indexed functions, a Twilio sandbox, settings via env."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import azure.functions as func
import pytest
import requests

from devhost.sandbox import SandboxConfig, create_sandbox_app
from devhost.serving import BackgroundServer
from shared import parallel
from shared.clock import use_clock
from shared.memory_store import MemoryStore
from shared.settings import Secret, Settings, get_settings
from shared.state import _store_for
from shared.store import Store
from shared.table_store import TableStore
from shared.twilio_client import build_client

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_BASE_URL = "https://functions.example.com"
VALID_FROM = "+15005550006"
VALID_TO = "+14155550100"
TEST_NUMBER_PREFIX = "+1500555"
# What the test account owns besides VALID_FROM: the sandbox refuses any other sender, as
# Twilio does (21606, 21210, 21701).
OTHER_FROM = "+14155550199"
MG_SID = "MG" + "a" * 32
APP_SETTING_KEYS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY_SID",
    "TWILIO_API_KEY_SECRET",
    "TWILIO_FROM_NUMBER",
    "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_ALLOWED_SENDERS",
    "ALLOWED_COUNTRIES",
    "SMS_NUMBER_TYPES",
    "CALL_NUMBER_TYPES",
    "NUMBER_TYPE_EXCEPTIONS",
    "DEFAULT_REGION",
    "PUBLIC_BASE_URL",
    "TWIML_ALLOWED_HOSTS",
    "TWIML_DEFAULT_MESSAGE",
    "TWIML_DEFAULT_VOICE",
    "INBOUND_FORWARD_NUMBER",
    "INBOUND_DIAL_TIMEOUT_SECONDS",
    "VOICEMAIL_GREETING",
    "VOICEMAIL_MAX_SECONDS",
    "VOICEMAIL_TRANSCRIBE",
    "INBOUND_SMS_AUTO_REPLY",
    "TWILIO_VALIDATE_SIGNATURES",
    "AZURE_FUNCTIONS_ENVIRONMENT",
    "WEBSITE_INSTANCE_ID",
    "TWILIO_TIMEOUT_SECONDS",
    "TWILIO_RATE_LIMIT_RETRIES",
    "TWILIO_RATE_LIMIT_BACKOFF_SECONDS",
    "TWILIO_API_BASE_URL",
    "WEBSITE_HOSTNAME",
    "PYTHON_THREADPOOL_THREAD_COUNT",
    "STATE_STORE_CONNECTION",
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "STATE_RETENTION_DAYS",
    "STATE_TABLE_PREFIX",
    "STATE_STORE_FAILURE_MODE",
    "LIMIT_PER_DESTINATION",
    "LIMIT_PER_CALLER",
    "LIMIT_GLOBAL",
    "BROADCAST_MAX_RECIPIENTS",
    "BROADCAST_CHUNK_SIZE",
    "BROADCAST_PARALLELISM",
    "BROADCAST_MESSAGES_PER_SECOND",
    "CALLER_AUTH",
    "WEBSITE_AUTH_ENABLED",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_JWKS_URL",
    "JWT_ALGORITHMS",
    "JWT_REQUIRED_SCOPE",
    "JWT_REQUIRED_ROLE",
    "JWT_LEEWAY_SECONDS",
)


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def build_request(
    method: str = "POST",
    url: str = f"{PUBLIC_BASE_URL}/api/SendSms",
    *,
    json_body: Any = None,
    form: Mapping[str, str | list[str]] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    route_params: Mapping[str, str] | None = None,
) -> func.HttpRequest:
    """A request as the worker builds it: params from the raw query, last duplicate wins."""
    all_headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    elif form is not None:
        body = urlencode(form, doseq=True).encode()
        all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    return func.HttpRequest(
        method, url, headers=all_headers, params=params, route_params=route_params, body=body or b""
    )


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def post_json(handler: Handler, url: str, payload: Any) -> tuple[int, Any]:
    response = handler(build_request("POST", url, json_body=payload))
    return response.status_code, body_of(response)


# `make mutate` (mutmut) forks a child per mutant from a process whose tests may have used
# the store pool (shared/parallel.py): in the child the pool's threads are gone, and a task
# submitted to it would wait forever. Each child makes a pool of its own.
os.register_at_fork(after_in_child=parallel._pool.cache_clear)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start Azurite are marked `azurite` (the store fixture's "table" variant
    marks itself), so a run can leave them out by marker (`-m "not azurite"`, as `make
    mutate` does) rather than by a name that other tests may contain ("printable")."""
    for item in items:
        if "azurite" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.azurite)


@pytest.fixture(scope="session")
def indexed() -> list[Any]:
    """The app as the worker indexes it; get_functions() raises if called twice."""
    return _indexed_once()


@functools.cache
def _indexed_once() -> list[Any]:
    # Once per process, not per session: `make mutate` (mutmut) runs several pytest
    # sessions in one process and its forks, where function_app is already indexed.
    from function_app import app

    return list(app.get_functions())


@pytest.fixture(scope="session")
def functions(indexed: list[Any]) -> dict[str, Handler]:
    """The user functions by name, called the documented way: build → get_user_function.
    Async ones (the worker runs them on its loop) are run to completion for the test."""
    return {f.get_function_name(): _synchronous(f.get_user_function()) for f in indexed}


def _synchronous(function: Callable[..., Any]) -> Callable[..., Any]:
    if not inspect.iscoroutinefunction(function):
        return function
    return lambda *args, **kwargs: asyncio.run(function(*args, **kwargs))


@dataclass
class Sandbox:
    url: str

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.url}{path}", timeout=35)
        response.raise_for_status()
        return response.json()

    def messages(self) -> list[dict[str, Any]]:
        return list(self.get("/sandbox/messages")["messages"])

    def calls(self) -> list[dict[str, Any]]:
        return list(self.get("/sandbox/calls")["calls"])

    def requests(self) -> list[dict[str, Any]]:
        return list(self.get("/sandbox/requests")["requests"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get("/sandbox/alerts")["alerts"])

    def settled_call(self, sid: str) -> dict[str, Any]:
        call: dict[str, Any] = self.get(f"/sandbox/calls/{sid}?wait=10")
        return call

    def reset(self) -> None:
        requests.post(f"{self.url}/sandbox/reset", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    config = SandboxConfig(
        ACCOUNT_SID,
        AUTH_TOKEN,
        slow_seconds=2.0,
        owned_numbers=frozenset({VALID_FROM, OTHER_FROM}),
        messaging_services=frozenset({MG_SID}),
    )
    server = BackgroundServer(create_sandbox_app(config)).start()
    yield Sandbox(server.url)
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def twilio_client(sandbox: Sandbox) -> Any:
    """The unchanged twilio library, pointed at the sandbox the way the app points it."""
    settings = Settings(
        account_sid=ACCOUNT_SID,
        auth_token=Secret(AUTH_TOKEN),
        twilio_api_base_url=sandbox.url,
    )
    return build_client(settings)


SetEnv = Callable[..., None]


@dataclass
class FakeClock:
    """Time that moves only when a test moves it (shared.clock.use_clock)."""

    time: float

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    """Starts on the last whole hour, so window boundaries are easy to place, and close
    to real time, so that what the sandbox stamps with its own clock looks recent."""
    clock = FakeClock(time.time() // 3600 * 3600)
    use_clock(clock)
    yield clock
    use_clock(None)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> Iterator[SetEnv]:
    """Settings for a sandboxed app, injected through the environment; call to override."""
    for key in APP_SETTING_KEYS:
        monkeypatch.delenv(key, raising=False)
    base = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": sandbox.url,
        "TWILIO_FROM_NUMBER": VALID_FROM,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "TWILIO_RATE_LIMIT_BACKOFF_SECONDS": "0",
        # Twilio's test numbers (+1 500 555 …) are "personal" numbers, which the number
        # type policy refuses; the sandbox's configuration lets them through, as here.
        "NUMBER_TYPE_EXCEPTIONS": TEST_NUMBER_PREFIX,
    }

    def set_env(**overrides: str | None) -> None:
        for key, value in {**base, **overrides}.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    set_env()
    yield set_env
    get_settings.cache_clear()
    _store_for.cache_clear()  # a fresh in-memory store for the next test


@dataclass
class DevHost:
    url: str
    sandbox: Sandbox
    process: subprocess.Popen[str]
    drain: threading.Thread
    log_path: Path
    durable: str = ""  # the Durable stand-in's rpcBaseUrl

    def log(self) -> str:
        """What the host wrote to stderr (tracebacks included), for failing tests."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            # Generous: on a loaded CI machine a starved host has taken over 10 s.
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            # Never leak it: a Popen collected later fails whichever test is running then.
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"devhost did not stop within 30 s of SIGTERM; its log ends:\n{self.log()[-3000:]}"
            ) from None
        finally:
            self.drain.join(10)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.log_path.unlink(missing_ok=True)


def start_devhost(env_overrides: Mapping[str, str] | None = None) -> DevHost:
    env = {k: v for k, v in os.environ.items() if k not in APP_SETTING_KEYS}
    env.update(env_overrides or {})
    log_path = Path(tempfile.mkstemp(prefix="devhost-", suffix=".log")[1])
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", "0", "--sandbox-port", "0",
             "--settings", str(ROOT / "tests" / "no-such-settings.json")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("devhost: ready "):
            urls = json.loads(line.removeprefix("devhost: ready "))
            drain = threading.Thread(target=process.stdout.read, daemon=True)
            drain.start()  # keep reading so a chatty host never blocks on a full pipe
            sandbox = Sandbox(urls["sandbox"] or "")
            return DevHost(urls["host"], sandbox, process, drain, log_path, urls["durable"] or "")
    process.kill()
    process.wait(10)
    process.stdout.close()
    raise RuntimeError("devhost did not become ready")


@pytest.fixture(scope="session")
def devhost() -> Iterator[DevHost]:
    host = start_devhost()
    yield host
    host.stop()


# Azurite -------------------------------------------------------------------------------

AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-table"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Azurite:
    """A real Azurite table service on 127.0.0.1 (disk-backed, so it survives a restart)."""

    def __init__(self, location: Path) -> None:
        if not AZURITE_BIN.exists():
            raise RuntimeError("Azurite is missing: run `make install` (npm ci)")
        self.location = location
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;"
        )

    def start(self) -> Azurite:
        self.process = subprocess.Popen(
            [str(AZURITE_BIN), "--tableHost", "127.0.0.1", "--tablePort", str(self.port),
             "--location", str(self.location), "--silent", "--skipApiVersionCheck",
             "--disableTelemetry"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("Azurite did not start")

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is Azurite's orderly shutdown: it saves its data, as a real account keeps it.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


def table_prefix() -> str:
    """Tables of their own for each test on the shared Azurite."""
    return "T" + uuid.uuid4().hex[:16]


@pytest.fixture(params=["memory", pytest.param("table", marks=pytest.mark.azurite)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The store contract holds for both: each test runs on memory and on Azurite's tables.
    A module that needs another store defines its own `store`, which takes precedence."""
    if request.param == "memory":
        yield MemoryStore()
    else:
        azurite: Azurite = request.getfixturevalue("azurite")
        yield TableStore(azurite.connection_string, table_prefix())
