"""The app as the worker Azure runs (azure-functions-runtime) indexes it, in a fresh process.

`get_functions()` alone accepts what the worker refuses; an app the worker refuses serves
no route at all once deployed. So indexing is checked through the worker itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared import broadcast_orchestration as orchestration
from tests.conftest import APP_SETTING_KEYS, ROOT

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def index_with_the_worker(app_directory: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in APP_SETTING_KEYS}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "devhost.worker", str(app_directory)],
        cwd=app_directory, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def http(route: str, auth: str, *extra: str) -> dict[str, Any]:
    return {
        "trigger": "httpTrigger",
        "route": route,
        "methods": [],  # any method reaches the handler, which answers 405 with Allow
        "authLevel": auth,
        "bindings": sorted(["out:http", *extra]),
    }


def test_the_worker_indexes_every_function_with_its_route_and_auth_level() -> None:
    result = index_with_the_worker(ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {
        "SendSms": http("SendSms", "function"),
        "MakeCall": http("MakeCall", "function"),
        "TwiML": http("TwiML", "anonymous"),
        "StatusCallback": http("StatusCallback", "anonymous"),
        "IncomingCall": http("IncomingCall", "anonymous"),
        "IncomingCallDialAction": http("IncomingCall/DialAction", "anonymous"),
        "IncomingCallRecordAction": http("IncomingCall/RecordAction", "anonymous"),
        "RecordingStatus": http("IncomingCall/RecordingStatus", "anonymous"),
        "IncomingSms": http("IncomingSms", "anonymous"),
        "Conversation": http("conversations/{number}", "function"),
        "MessageStatus": http("messages/{sid}", "function"),
        "CallStatus": http("calls/{sid}", "function"),
        "StartBroadcast": http("broadcasts", "function", "in:durableClient"),
        "Broadcast": http("broadcasts/{id}", "function", "in:durableClient"),
        "Health": http("health", "anonymous"),
        "OpenApi": http("openapi.json", "anonymous"),
        "Cleanup": {"trigger": "timerTrigger", "bindings": []},
        # Durable calls these by function name: the names the orchestrators use.
        orchestration.BROADCAST_ORCHESTRATOR: {"trigger": "orchestrationTrigger", "bindings": []},
        orchestration.CHUNK_ORCHESTRATOR: {"trigger": "orchestrationTrigger", "bindings": []},
        orchestration.LOAD_CHUNK_ACTIVITY: {"trigger": "activityTrigger", "bindings": []},
        orchestration.SEND_ACTIVITY: {"trigger": "activityTrigger", "bindings": []},
        orchestration.SETTLE_CHUNK_ACTIVITY: {"trigger": "activityTrigger", "bindings": []},
    }


def test_the_worker_refuses_a_parameterised_annotation_on_a_binding() -> None:
    # The check above must be able to fail: this is what Azure did with our app.
    result = index_with_the_worker(FIXTURES / "generic_annotation")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip().splitlines()[-1] == (
        "worker refused the app: FunctionLoadError: cannot load the load_chunk function: "
        "binding job has invalid non-type annotation dict[str, typing.Any]"
    )
