"""The OpenAPI document, and the running app checked against it by schemathesis.

A devhost of its own (sandbox mode, limits off so that generated traffic is not cut short
by 429s) answers a bounded number of generated requests per operation: none may be a 5xx,
and every answer must match the document (status, content type, headers, body).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from shared.openapi import openapi_document
from shared.settings import load_settings
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ROOT,
    VALID_FROM,
    DevHost,
    Sandbox,
    start_devhost,
)

MAX_EXAMPLES = 25


@pytest.fixture(scope="session")
def openapi_host(sandbox_server: Sandbox) -> Iterator[DevHost]:
    # The test's own sandbox (a known auth token), so that the hooks can sign as Twilio does.
    host = start_devhost(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": sandbox_server.url,
            "TWILIO_FROM_NUMBER": VALID_FROM,
            "LIMIT_PER_DESTINATION": "off",
            "LIMIT_PER_CALLER": "off",
            "LIMIT_GLOBAL": "off",
        }
    )
    yield host
    host.stop()


def test_the_document_covers_every_public_route(openapi_host: DevHost) -> None:
    document = requests.get(f"{openapi_host.url}/api/openapi.json", timeout=10).json()
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": f"{openapi_host.url}/api"}]
    assert {path: sorted(operations) for path, operations in document["paths"].items()} == {
        "/SendSms": ["post"],
        "/MakeCall": ["post"],
        "/TwiML": ["get", "post"],
        "/StatusCallback": ["post"],
        "/IncomingCall": ["get", "post"],
        "/IncomingCall/DialAction": ["post"],
        "/IncomingCall/RecordAction": ["post"],
        "/IncomingCall/RecordingStatus": ["post"],
        "/IncomingSms": ["post"],
        "/conversations/{number}": ["get"],
        "/messages/{sid}": ["get"],
        "/calls/{sid}": ["get"],
        "/broadcasts": ["post"],
        "/broadcasts/{id}": ["delete", "get"],
        "/health": ["get"],
        "/openapi.json": ["get"],
    }
    send = document["paths"]["/SendSms"]["post"]
    assert send["security"] == [{"functionKey": []}]
    assert [p["name"] for p in send["parameters"]] == ["Idempotency-Key"]
    assert sorted(send["responses"]) == [
        "201",
        "400",
        "401",
        "403",
        "409",
        "413",
        "415",
        "422",
        "429",
        "500",
        "502",
        "503",
        "504",
    ]
    assert document["components"]["securitySchemes"] == {
        "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}
    }


CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def test_the_running_app_keeps_to_its_document(openapi_host: DevHost, tmp_path: Path) -> None:
    # The CLI, because schemathesis's pytest plugin does not run on this pytest.
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")), "run", f"{openapi_host.url}/api/openapi.json",
            "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES), "--seed", "20261128",
            # One worker: with threads, Python 3.11's ast module can fail inside schemathesis
            # ("AST constructor recursion depth mismatch", fixed in later CPython releases).
            "--workers", "1", "--request-timeout", "20", "--no-color",
            "--generation-database", "none", "--report", "junit", "--report-dir", str(tmp_path),
            # A generated broadcast would keep sending to the shared sandbox in the background;
            # tests/test_broadcasts.py and tests/test_durable_standin.py cover those routes.
            "--exclude-path-regex", "^/broadcasts",
            # A caller holds a real (ASCII) key; a made-up header byte that is not UTF-8 never
            # reaches the app on Azure (Kestrel answers an empty 400), so none is generated.
            "--header", "x-functions-key: schemathesis-function-key",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={
            **os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "SIGNING_TOKEN": AUTH_TOKEN,
        },
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("mode", "scheme"),
    [
        ("jwt", {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}),
        (
            "easyauth",
            {
                "easyAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "App Service Authentication",
                }
            },
        ),
    ],
)
def test_the_document_names_the_configured_auth_scheme(
    mode: str, scheme: dict[str, object]
) -> None:
    document = openapi_document(load_settings({"CALLER_AUTH": mode}))
    assert document["components"]["securitySchemes"] == scheme
    assert document["paths"]["/SendSms"]["post"]["security"] == [{next(iter(scheme)): []}]
    assert document["paths"]["/TwiML"]["get"]["security"] == []
    assert "servers" not in document  # no PUBLIC_BASE_URL: relative to wherever it is served
