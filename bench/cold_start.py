"""Cold start: a fresh Python process per sample, as a new Functions instance pays it.

Through the worker Azure runs (azure-functions-runtime, bench/cold_worker.py): worker
init indexes the app, then one TwiML request (and, for the SendSms path, one SendSms
against the sandbox) is invoked through the worker. The floor is the same worker start
on a one-function app that imports azure.functions and azure.durable_functions.

For comparison in the same run, the pre-worker measure: importing function_app and
calling `get_functions()` directly (what the app's own code costs, without the worker),
against its floor of the same imports and a one-function `get_functions()`.
Samples are interleaved so that load on the machine hits all alike.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twilio.request_validator import RequestValidator

from bench.app_env import PUBLIC_BASE_URL, bench_environment
from bench.cold_worker import Request
from bench.stand_ins import ACCOUNT_SID, AUTH_TOKEN

ROOT = Path(__file__).resolve().parent.parent
FLOOR_APP = Path(__file__).resolve().parent / "floor_app"
SAMPLES = 21

FLOOR_WITHOUT_WORKER = """
import azure.functions as func
import azure.durable_functions
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
@app.route(route="hello")
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")
app.get_functions()
"""

OURS_WITHOUT_WORKER = """
import asyncio, json, sys
import azure.functions as func
import function_app
functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
url, signature, form = sys.argv[1], sys.argv[2], sys.argv[3]
twiml = asyncio.run(functions["TwiML"](func.HttpRequest("POST", url, body=form.encode(), headers={
    "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})))
assert twiml.status_code == 200, twiml.get_body()
if len(sys.argv) > 4:
    sms = functions["SendSms"](func.HttpRequest("POST", sys.argv[4], body=b'{"to": "+14155550100", "body": "hi"}',
        headers={"Content-Type": "application/json"}))
    assert sms.status_code == 201, sms.get_body()
print(json.dumps(sorted(m for m in ("twilio.rest", "requests", "azure.data.tables", "phonenumbers") if m in sys.modules)))
"""


def _command(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def _worker(app: Path, *requests: Request) -> list[str]:
    return [sys.executable, "-m", "bench.cold_worker", str(app), *(r.as_json() for r in requests)]


def run(sandbox_url: str) -> dict[str, Any]:
    form = "CallSid=CA" + "1" * 32 + "&From=%2B15005550006&To=%2B14155550100"
    twiml_url = f"{PUBLIC_BASE_URL}/api/TwiML?message=Hello"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        twiml_url, {"CallSid": "CA" + "1" * 32, "From": "+15005550006", "To": "+14155550100"}
    )
    env = {
        **os.environ,
        **bench_environment(TWILIO_API_BASE_URL=sandbox_url),
        "PYTHONPATH": str(ROOT),
    }
    env["TWILIO_ACCOUNT_SID"] = ACCOUNT_SID
    twiml_args = (twiml_url, signature, form)
    twiml = Request("TwiML", "POST", twiml_url, 200, {
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature,
    }, form)  # fmt: skip
    sms = Request(
        "SendSms", "POST", f"{PUBLIC_BASE_URL}/api/SendSms", 201,
        {"Content-Type": "application/json"}, '{"to": "+14155550100", "body": "hi"}',
    )  # fmt: skip
    commands = {
        "floor": _worker(FLOOR_APP, Request("hello", "GET", "http://localhost/api/hello", 200)),
        "twiml": _worker(ROOT, twiml),
        "twiml+sendsms": _worker(ROOT, twiml, sms),
        "floor, no worker": _command(FLOOR_WITHOUT_WORKER),
        "twiml, no worker": _command(OURS_WITHOUT_WORKER, *twiml_args),
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    loaded: dict[str, list[str]] = {}
    for _ in range(SAMPLES):
        for name, command in commands.items():
            start = time.perf_counter()
            result = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
            )
            samples[name].append(time.perf_counter() - start)
            if result.returncode != 0:
                raise RuntimeError(f"cold start {name} failed: {result.stderr[-2000:]}")
            if not name.startswith("floor"):
                loaded[name] = json.loads(result.stdout.strip().splitlines()[-1])
    # Samples are taken in rounds (floor, twiml, twiml+sendsms): the median of each round's
    # own ratio cancels drift on a shared machine better than a ratio of medians.
    paired = {
        name: statistics.median(
            ours / floor for ours, floor in zip(values, samples[_floor_of(name)], strict=True)
        )
        for name, values in samples.items()
    }
    return {
        "samples": SAMPLES,
        "paired_ratio": paired,
        "stats": {name: _stats(values) for name, values in samples.items()},
        "loaded": loaded,
        "offenders": _offenders(commands["floor"], commands["twiml"], env),
    }


def _floor_of(name: str) -> str:
    return "floor, no worker" if name.endswith("no worker") else "floor"


def _stats(values: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(values, n=4)
    return {"median": statistics.median(values), "q1": quartiles[0], "q3": quartiles[2],
            "min": min(values), "max": max(values)}  # fmt: skip


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _import_times(command: list[str], env: dict[str, str]) -> dict[str, tuple[int, int, int]]:
    """module -> (self µs, cumulative µs, depth) from `python -X importtime`."""
    result = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = {}
    for line in result.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            found[match.group(4)] = (
                int(match.group(1)),
                int(match.group(2)),
                len(match.group(3)) // 2,
            )
    return found


def _offenders(floor: list[str], ours: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    """Modules the TwiML path imports beyond the floor, by their own import time."""
    floor_modules = set(_import_times(floor, env))
    ours_times = _import_times(ours, env)
    extra: list[dict[str, Any]] = [
        {"module": module, "self_ms": own / 1000, "cumulative_ms": total / 1000}
        for module, (own, total, _depth) in ours_times.items()
        if module not in floor_modules
    ]
    return sorted(extra, key=lambda row: -float(row["self_ms"]))[:12]
