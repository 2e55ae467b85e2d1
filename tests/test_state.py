"""Which store the app uses: a table through a connection string or the managed identity,
memory only off Azure, and on Azure without a store a 503 naming the setting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
import trustme
from azure.core.credentials import AccessToken
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from twilio.request_validator import RequestValidator

from shared import table_store
from shared.memory_store import MemoryStore
from shared.settings import DEVELOPMENT_STORAGE, Settings, StoreIdentity, load_settings
from shared.state import StoreNotConfigured, _store_for, get_store
from shared.store import StoreUnavailable
from shared.table_store import TableStore
from tests.conftest import (
    AUTH_TOKEN,
    AZURITE_BIN,
    PUBLIC_BASE_URL,
    ROOT,
    Handler,
    SetEnv,
    body_of,
    build_request,
    free_port,
    table_prefix,
)

ENDPOINT = "https://stexample.table.core.windows.net"
CLIENT_ID = "0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
IDENTITY = {
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__tableServiceUri": ENDPOINT,
}


@pytest.fixture(autouse=True)
def fresh_store() -> Iterator[None]:
    _store_for.cache_clear()
    yield
    _store_for.cache_clear()


# --- settings -------------------------------------------------------------------------


def test_the_templates_identity_settings_are_a_table_store() -> None:
    settings = load_settings({**IDENTITY, "WEBSITE_INSTANCE_ID": "a1"})
    assert settings.store_identity == StoreIdentity(ENDPOINT, None, managed_identity=True)
    assert (settings.store_connection, settings.store_kind) == (None, "table")


def test_an_account_name_is_its_public_table_endpoint_and_a_client_id_a_user_identity() -> None:
    settings = load_settings(
        {
            "AzureWebJobsStorage__accountName": "stexample",
            "AzureWebJobsStorage__clientId": CLIENT_ID,
        }
    )
    assert settings.store_identity == StoreIdentity(ENDPOINT, CLIENT_ID, managed_identity=True)


def test_without_credential_setting_default_azure_credential_is_used() -> None:
    settings = load_settings({"AzureWebJobsStorage__tableServiceUri": ENDPOINT + "/"})
    assert settings.store_identity == StoreIdentity(ENDPOINT, None, managed_identity=False)


def test_a_connection_string_wins_over_identity_settings() -> None:
    settings = load_settings({**IDENTITY, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert settings.store_connection is not None
    assert settings.store_connection.reveal() == DEVELOPMENT_STORAGE
    assert (settings.store_identity, settings.store_kind) == (None, "table")


def test_store_kinds() -> None:
    assert load_settings({}).store_kind == "memory"
    assert load_settings({"WEBSITE_INSTANCE_ID": "a1"}).store_kind == "missing"
    assert load_settings({"STATE_STORE_CONNECTION": "UseDevelopmentStorage=true"}).store_kind == (
        "table"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"AzureWebJobsStorage__tableServiceUri": "http://127.0.0.1:10002/devstoreaccount1"},
            "setting AzureWebJobsStorage__tableServiceUri must be an https URL.",
        ),
        (
            {"AzureWebJobsStorage__accountName": "St_Example"},
            "setting AzureWebJobsStorage__accountName must be a storage account name (3-24 a-z, 0-9).",
        ),
        (
            {**IDENTITY, "AzureWebJobsStorage__credential": "secret"},
            "setting AzureWebJobsStorage__credential must be managedidentity, or unset.",
        ),
        (
            {**IDENTITY, "AzureWebJobsStorage__clientId": "me"},
            "setting AzureWebJobsStorage__clientId must be a client ID (a GUID).",
        ),
    ],
)
def test_bad_identity_settings_name_their_key(environ: dict[str, str], message: str) -> None:
    from shared.errors import InvalidSetting

    with pytest.raises(InvalidSetting) as raised:
        load_settings(environ)
    assert raised.value.detail == f"The server is misconfigured: {message}"


# --- the store each configuration gets ------------------------------------------------


def test_locally_without_storage_the_store_is_memory(caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(get_store(Settings()), MemoryStore)
    assert caplog.messages == [
        "No storage configured: using the in-memory store (one process only)"
    ]


def test_on_azure_without_storage_there_is_no_store() -> None:
    with pytest.raises(StoreNotConfigured) as raised:
        get_store(Settings(running_on_azure=True))
    assert (raised.value.status_code, raised.value.extra) == (
        503,
        {"setting": "AzureWebJobsStorage__tableServiceUri"},
    )


def test_the_identity_settings_reach_the_table_endpoint_with_the_managed_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import azure.identity

    built: list[dict[str, Any]] = []

    class RecordingCredential(ManagedIdentityCredential):
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", RecordingCredential)
    environ = {**IDENTITY, "AzureWebJobsStorage__clientId": CLIENT_ID}
    store = get_store(load_settings({**environ, "STATE_STORE_READ_TIMEOUT_SECONDS": "4"}))
    assert isinstance(store, TableStore)
    service: Any = store._service
    assert service.url == ENDPOINT
    assert isinstance(service.credential, RecordingCredential)
    # The token request is bounded like every store request: no retries, short timeouts.
    assert built == [
        {"client_id": CLIENT_ID, "retry_total": 0, "connection_timeout": 2.0, "read_timeout": 4.0}
    ]


def test_default_azure_credential_without_the_credential_setting() -> None:
    identity = StoreIdentity(ENDPOINT, None, managed_identity=False)
    assert isinstance(table_store.identity_credential(identity), DefaultAzureCredential)


class FailingCredential:
    """A managed identity endpoint that does not answer."""

    calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.exceptions import ClientAuthenticationError

        FailingCredential.calls += 1
        raise ClientAuthenticationError("no identity endpoint")


def test_a_token_that_cannot_be_had_is_a_quick_503_and_opens_the_breaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(table_store, "identity_credential", lambda *a, **k: FailingCredential())
    store = TableStore(StoreIdentity(ENDPOINT), "T", cooldown=60)
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            store.is_opted_out("+14155550100", "+15005550006")
    assert FailingCredential.calls == 3  # three failures in a row; then the breaker answers


# --- through the routes ---------------------------------------------------------------


def test_routes_needing_state_answer_503_on_azure_without_a_store(
    functions: dict[str, Handler], indexed: list[Any], app_env: SetEnv
) -> None:
    app_env(WEBSITE_INSTANCE_ID="a1b2")
    callback = f"{PUBLIC_BASE_URL}/api/StatusCallback"
    form = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "sent"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(callback, form)
    requests = {
        "SendSms": build_request(json_body={"to": "+14155550100", "body": "hi"}),
        "MakeCall": build_request(
            url=f"{PUBLIC_BASE_URL}/api/MakeCall", json_body={"to": "+14155550100"}
        ),
        "MessageStatus": build_request(
            "GET", f"{PUBLIC_BASE_URL}/api/messages/SM1", route_params={"sid": "SM1"}
        ),
        "CallStatus": build_request(
            "GET", f"{PUBLIC_BASE_URL}/api/calls/CA1", route_params={"sid": "CA1"}
        ),
        "StatusCallback": build_request(
            "POST", callback, form=form, headers={"X-Twilio-Signature": signature}
        ),
        "StartBroadcast": build_request(
            url=f"{PUBLIC_BASE_URL}/api/broadcasts",
            json_body={"to": ["+14155550100"], "body": "hi"},
        ),
        "Broadcast": build_request(
            "GET", f"{PUBLIC_BASE_URL}/api/broadcasts/b1", route_params={"id": "b1"}
        ),
    }
    durable = {
        f.get_function_name(): f.get_user_function().__wrapped__
        for f in indexed
        if f.get_function_name() in ("StartBroadcast", "Broadcast")
    }
    expected = {
        "type": "urn:twilio-functions:problem:missing-setting",
        "title": "Server not configured",
        "status": 503,
        "detail": "The server is not configured for this operation: no state store. Set "
        "AzureWebJobsStorage__tableServiceUri (Table Storage through the app's managed "
        "identity) or STATE_STORE_CONNECTION (a connection string).",
        "setting": "AzureWebJobsStorage__tableServiceUri",
    }
    answers = {}
    for name, request in requests.items():
        if name in durable:  # the client is never reached: the store is asked for first
            response = asyncio.run(durable[name](req=request, client=None))
        else:
            response = functions[name](request)
        answers[name] = (response.status_code, body_of(response))
    assert answers == {name: (503, expected) for name in requests}


def test_health_says_which_store_without_saying_where(
    functions: dict[str, Handler], app_env: SetEnv
) -> None:
    def state() -> Any:
        body = body_of(functions["Health"](build_request("GET", f"{PUBLIC_BASE_URL}/api/health")))
        assert "core.windows.net" not in str(body)
        return body["state"]

    assert state() == "memory"
    app_env(WEBSITE_INSTANCE_ID="a1b2")
    assert state() == "missing"
    app_env(WEBSITE_INSTANCE_ID="a1b2", **IDENTITY)
    assert state() == "table"


# --- the identity path end to end: Azurite over https, accepting bearer tokens ----------


class UnsignedToken:
    """What Azurite's `--oauth basic` checks (audience, issuer, lifetime), unsigned."""

    requests: ClassVar[list[tuple[str, ...]]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        UnsignedToken.requests.append(scopes)
        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
            "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
        }  # fmt: skip
        return AccessToken(jwt.encode(claims, "unchecked-by-azurite-basic-oauth"), now + 3600)


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    import signal
    import socket

    folder = tmp_path_factory.mktemp("azurite-oauth")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    port = free_port()
    process = subprocess.Popen(
        [str(AZURITE_BIN), "--tableHost", "127.0.0.1", "--tablePort", str(port),
         "--location", str(folder), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
         "--oauth", "basic", "--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"https://127.0.0.1:{port}/devstoreaccount1", folder / "ca.pem"
    process.send_signal(signal.SIGINT)
    process.wait(10)


def test_the_store_works_through_a_bearer_token(
    azurite_oauth: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, ca = azurite_oauth
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # trust the test CA (requests honours it)
    monkeypatch.setattr(table_store, "identity_credential", lambda *a, **k: UnsignedToken())
    UnsignedToken.requests.clear()
    store = TableStore(StoreIdentity(endpoint), table_prefix())
    assert store.is_opted_out("+14155550100", "+15005550006") is False
    store.add_opt_out("+14155550100", ["+15005550006"])
    assert store.is_opted_out("+14155550100", "+15005550006") is True
    # One token for every request (azure-core caches it until it is about to expire).
    assert UnsignedToken.requests == [("https://storage.azure.com/.default",)]


def test_azurite_refuses_requests_without_a_token(azurite_oauth: tuple[str, Path]) -> None:
    # The end-to-end test above proves something only if a bad token would fail.
    endpoint, ca = azurite_oauth
    import requests

    answer = requests.get(f"{endpoint}/Tables", verify=str(ca), timeout=10)
    assert answer.status_code == 403


def test_the_twiml_path_never_loads_azure_identity_nor_opentelemetry() -> None:
    # Cold start: Twilio waits 15 s for TwiML; the identity library is for the store only,
    # and OpenTelemetry's metrics and exporter are the worker's to load when telemetry is on
    # (shared/telemetry.py; its trace API comes with azure-functions-durable anyway).
    code = "\n".join([
        "import asyncio, sys, function_app, azure.functions as func",
        "fns = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}",
        "twiml = asyncio.run(fns['TwiML'](func.HttpRequest('GET', 'https://x/api/TwiML?message=hi', body=b'')))",
        "health = fns['Health'](func.HttpRequest('GET', 'https://x/api/health', body=b''))",
        "print(twiml.status_code, health.status_code, *[m in sys.modules for m in MODULES])",
    ]).replace("MODULES", repr(("azure.identity", "azure.data.tables", "opentelemetry.metrics", "azure.monitor")))  # fmt: skip
    environ = {
        **IDENTITY, "PATH": "", "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
        "TWILIO_VALIDATE_SIGNATURES": "false",
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.split() == ["200", "200", "False", "False", "False", "False"]
