"""The app's composition: host.json, documented settings, health, the last-resort 500.

Indexing itself is checked through the worker Azure runs, in tests/test_worker.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.webhooks import ROUTE_PREFIX
from tests.conftest import ROOT, Handler, SetEnv, body_of, build_request


def test_host_json_is_a_functions_4_host_file() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert host["functionTimeout"] == "00:02:00"
    assert host["extensions"]["http"]["routePrefix"] == ROUTE_PREFIX


def test_every_setting_the_app_reads_is_documented() -> None:
    read = set(
        re.findall(r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"', (ROOT / "shared" / "settings.py").read_text())
    )
    platform = {
        "WEBSITE_HOSTNAME",
        "PYTHON_THREADPOOL_THREAD_COUNT",
        "WEBSITE_AUTH_ENABLED",
        "WEBSITE_INSTANCE_ID",
        "AZURE_FUNCTIONS_ENVIRONMENT",  # Core Tools and devhost: Development
    }  # set by Azure
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    docs = "".join(path.read_text() for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    assert sorted(read - platform - set(example)) == []
    assert sorted(key for key in read if f"`{key}`" not in docs) == []


def test_health_says_how_twilio_is_configured_and_nothing_secret(
    functions: dict[str, Handler], app_env: SetEnv
) -> None:
    response = functions["Health"](build_request("GET", "https://functions.example.com/api/health"))
    assert (response.status_code, body_of(response)) == (
        200,
        {
            "status": "ok",
            "twilio": "sandbox",
            "state": "memory",
            "publicBaseUrl": "https://functions.example.com",
        },
    )
    app_env(TWILIO_API_BASE_URL=None)
    assert (
        body_of(functions["Health"](build_request("GET", "https://x/api/health")))["twilio"]
        == "live"
    )
    app_env(TWILIO_AUTH_TOKEN=None)
    assert (
        body_of(functions["Health"](build_request("GET", "https://x/api/health")))["twilio"]
        == "missing"
    )


def test_unexpected_errors_are_a_generic_500_problem(
    functions: dict[str, Handler], app_env: SetEnv, monkeypatch: Any
) -> None:
    import shared.messaging

    def explode(*args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(shared.messaging, "send_sms", explode)
    response = functions["SendSms"](
        build_request("POST", json_body={"to": "+14155550100", "body": "x"})
    )
    assert (response.status_code, body_of(response)) == (
        500,
        {
            "type": "about:blank",
            "title": "Internal Server Error",
            "status": 500,
            "detail": "An unexpected error occurred.",
        },
    )
