"""The state path, through the app's HTTP routes only: what Table Storage costs a send.

Real processes over loopback: Azurite's table service (in memory), the counting proxy
in front of it (bench/store_proxy.py), an HTTPS Twilio stand-in answering every create at
once (bench/stand_ins.py), and devhost instances (the worker Azure runs) whose
STATE_STORE_CONNECTION points at the proxy. The bench speaks HTTP to the app and counts
at the proxy, never calling the app's Python: the same bench measures any store design.

(a) Store requests per SendSms (an Idempotency-Key, opt-out, three limits) and per
    status callback, warm; the longest chain of them that ran one after another.
(b) The latency a store round trip adds: every store request delayed 10 ms by the
    proxy, interleaved with undelayed sends; (delayed - undelayed) ÷ the delay.
(c) 400 concurrent SendSms over two app processes sharing the store, against the same
    load on two processes with state in memory (each its own): the ceiling.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import requests
from twilio.request_validator import RequestValidator

from bench.stand_ins import ACCOUNT_SID, AUTH_TOKEN, CountingTwilio
from bench.store_proxy import Exchange, StoreProxy, sequential_round_trips

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-table"
READY_PREFIX = "devhost: ready "  # what devhost prints once it serves
FROM_NUMBER = "+15005550006"
TABLE_PREFIX = "Bench"

SAMPLES = 20  # (a): sends, each followed by two status callbacks
LATENCY_ROUNDS = 15  # (b): each round sends four: undelayed, delayed, delayed, undelayed
DELAY = 0.010
LOAD = 400  # (c): sends per burst, alternating between the two processes
PER_PROCESS = 64  # (c): at most this many in flight to each process
ROUNDS = 3  # (c): bursts with state on and off, alternating which goes first
WORKER_THREADS = 32  # the worker's sync thread pool in each app process
CALLERS = 16  # function keys the sends come from (per-caller counters)
SETTLE = 0.05  # (a): after an answer, wait for any store request the app still makes

# Limits high enough that policy refuses nothing, finite so that every counter is
# charged on every send (the global one shared by both processes).
LIMITS = {
    "LIMIT_PER_CALLER": "1000000/hour",
    "LIMIT_PER_DESTINATION": "1000/hour",
    "LIMIT_GLOBAL": "100000000/day",
}
# App settings that must come from this bench only, never from the caller's shell.
_APP_PREFIXES = ("TWILIO_", "STATE_", "LIMIT_", "AzureWebJobs", "JWT_", "BROADCAST_", "WEBSITE_")
_APP_KEYS = {
    "PUBLIC_BASE_URL", "CALLER_AUTH", "ALLOWED_COUNTRIES", "SMS_NUMBER_TYPES",
    "CALL_NUMBER_TYPES", "NUMBER_TYPE_EXCEPTIONS", "DEFAULT_REGION", "TWIML_ALLOWED_HOSTS",
    "AZURE_FUNCTIONS_ENVIRONMENT", "PYTHON_THREADPOOL_THREAD_COUNT", "REQUESTS_CA_BUNDLE",
}  # fmt: skip


def run() -> dict[str, Any]:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        azurite = stack.enter_context(_azurite())
        proxy = stack.enter_context(StoreProxy(azurite))
        twilio = stack.enter_context(CountingTwilio(tmp))
        base = _app_environment(twilio)
        state_on = {
            **base,
            "STATE_STORE_CONNECTION": proxy.connection_string,
            "STATE_TABLE_PREFIX": TABLE_PREFIX,
        }
        hosts = stack.enter_context(_hosts([state_on, state_on, base, base], tmp))
        on, off = hosts[:2], hosts[2:]
        numbers = _Numbers()
        with requests.Session() as session:
            for host in hosts:  # tables made, clients built, first requests done
                for _ in range(2):
                    _expect_created(_send(session, host, numbers), host)
            if proxy.mark() == 0:
                raise RuntimeError("the app made no store request: is state really on?")
            counts = _requests_per_request(session, on[0], proxy, numbers)
            latency = _added_latency(session, on[0], proxy, numbers)
        load = _load(on, off, proxy, twilio, numbers)
    return {
        **counts,
        "latency": latency,
        "load": load,
        "worker_threads": WORKER_THREADS,
        "load_size": LOAD,
        "per_process": PER_PROCESS,
        "callers": CALLERS,
        "seconds": time.monotonic() - started,
    }


# (a) ----------------------------------------------------------------------------------


def _requests_per_request(
    session: requests.Session, host: _Host, proxy: StoreProxy, numbers: _Numbers
) -> dict[str, Any]:
    sends: list[list[Exchange]] = []
    sids: list[str] = []
    for _ in range(SAMPLES):
        mark = proxy.mark()
        response = _send(session, host, numbers)
        _expect_created(response, host)
        sids.append(response.json()["sid"])
        time.sleep(SETTLE)
        sends.append(proxy.exchanges(mark))
    validator = RequestValidator(AUTH_TOKEN)
    callbacks: list[list[Exchange]] = []
    for sid in sids:
        for status in ("sent", "delivered"):
            mark = proxy.mark()
            response = _callback(session, host, validator, sid, status)
            if response.status_code != 204:
                raise RuntimeError(f"a status callback answered {response.status_code}")
            time.sleep(SETTLE)
            callbacks.append(proxy.exchanges(mark))
    return {"send": _tally(sends), "callback": _tally(callbacks)}


def _tally(samples: list[list[Exchange]]) -> dict[str, Any]:
    counts = [len(sample) for sample in samples]
    median = statistics.median(counts)
    typical = min(samples, key=lambda s: abs(len(s) - median))  # the first nearest the median
    return {
        "samples": len(samples),
        "median": median,
        "min": min(counts),
        "max": max(counts),
        "sequential_median": statistics.median(sequential_round_trips(s) for s in samples),
        "sequential_max": max(sequential_round_trips(s) for s in samples),
        "conflicts": sum(e.conflict for s in samples for e in s),
        "typical": [_describe(e) for e in sorted(typical, key=lambda e: e.start)],
    }


def _describe(exchange: Exchange) -> str:
    """`GET Counters(…) 200`: the table, not the keys (digests of numbers and callers)."""
    resource = exchange.path.rsplit("/", 1)[-1].removeprefix(TABLE_PREFIX)
    name, paren, _ = resource.partition("(")
    return f"{exchange.method} {name}{'(…)' if paren else ''} {exchange.status}"


# (b) ----------------------------------------------------------------------------------


def _added_latency(
    session: requests.Session, host: _Host, proxy: StoreProxy, numbers: _Numbers
) -> dict[str, Any]:
    seconds: dict[bool, list[float]] = {False: [], True: []}
    requests_made: dict[bool, list[int]] = {False: [], True: []}
    slept: list[float] = []  # what the proxy really slept: the unit of a round trip
    served: list[float] = []  # undelayed: the store's own time, as the proxy saw it
    try:
        # ABBA: a drift on a shared machine hits both arms alike.
        for delayed in [False, True, True, False] * LATENCY_ROUNDS:
            proxy.set_delay(DELAY if delayed else 0.0)
            mark = proxy.mark()
            start = time.perf_counter()
            response = _send(session, host, numbers)
            elapsed = time.perf_counter() - start
            _expect_created(response, host)
            seconds[delayed].append(elapsed)
            exchanges = proxy.exchanges(mark)
            requests_made[delayed].append(len(exchanges))
            if delayed:
                slept += [e.delayed for e in exchanges]
            else:
                served += [e.end - e.start for e in exchanges]
    finally:
        proxy.set_delay(0.0)
    plain, slow = statistics.median(seconds[False]), statistics.median(seconds[True])
    unit = statistics.median(slept)
    return {
        "samples": len(seconds[False]),
        "plain_ms": plain * 1000,
        "delayed_ms": slow * 1000,
        "nominal_delay_ms": DELAY * 1000,
        "actual_delay_ms": unit * 1000,
        "store_ms": statistics.median(served) * 1000,
        "requests_plain": statistics.median(requests_made[False]),
        "requests_delayed": statistics.median(requests_made[True]),
        "round_trips": (slow - plain) / unit,
    }


# (c) ----------------------------------------------------------------------------------


def _load(
    on: list[_Host], off: list[_Host], proxy: StoreProxy, twilio: CountingTwilio, numbers: _Numbers
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for round_ in range(ROUNDS):
        for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
            hosts = on if mode == "on" else off
            mark, created = proxy.mark(), twilio.counts()["requests"]
            burst = asyncio.run(_burst([h.url for h in hosts], numbers))
            exchanges = proxy.exchanges(mark)
            burst["twilio_creates"] = twilio.counts()["requests"] - created
            burst["store_requests"] = len(exchanges)
            burst["conflicts"] = sum(e.conflict for e in exchanges)
            runs[mode].append(burst)
    return {mode: _summary(bursts) for mode, bursts in runs.items()}


async def _burst(urls: list[str], numbers: _Numbers) -> dict[str, Any]:
    """LOAD sends alternating between the processes, at most PER_PROCESS in flight to
    each (the connector's limit), all started at once."""
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=PER_PROCESS),
            timeout=aiohttp.ClientTimeout(total=120),
        )
        for _ in urls
    ]
    jobs = [(i % len(urls), numbers.next()) for i in range(LOAD)]

    async def send(target: int, number: int) -> tuple[int, str]:
        async with sessions[target].post(
            f"{urls[target]}/api/SendSms", json=_sms(number), headers=_headers(number)
        ) as response:
            body = await response.read()
            title = ""
            if response.status >= 300:
                with contextlib.suppress(ValueError):
                    title = str(json.loads(body).get("title", ""))
            return response.status, title

    try:
        start = time.perf_counter()
        answers = await asyncio.gather(*(send(target, number) for target, number in jobs))
        elapsed = time.perf_counter() - start
    finally:
        for session in sessions:
            await session.close()
    statuses = collections.Counter(status for status, _ in answers)
    return {
        "seconds": elapsed,
        "statuses": dict(statuses),
        "refusals": dict(collections.Counter(f"{s} {t}".strip() for s, t in answers if s >= 300)),
    }


def _summary(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: collections.Counter[int] = collections.Counter()
    refusals: collections.Counter[str] = collections.Counter()
    for burst in bursts:
        statuses.update(burst["statuses"])
        refusals.update(burst["refusals"])
    return {
        "bursts": len(bursts),
        "sends_per_second": statistics.median(LOAD / b["seconds"] for b in bursts),
        "seconds": [b["seconds"] for b in bursts],
        "created": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "unavailable": statuses.get(503, 0),
        "other_failures": sum(n for s, n in statuses.items() if s >= 300 and s != 503),
        "refusals": dict(refusals.most_common(5)),
        "twilio_creates": sum(b["twilio_creates"] for b in bursts),
        "store_requests_per_send": sum(b["store_requests"] for b in bursts) / (LOAD * len(bursts)),
        "conflicts": sum(b["conflicts"] for b in bursts),
        "conflicts_per_burst": [b["conflicts"] for b in bursts],
    }


# Requests -----------------------------------------------------------------------------


class _Numbers:
    """A new recipient (and Idempotency-Key) for every send of the run."""

    def __init__(self) -> None:
        self._next = 0

    def next(self) -> int:
        self._next += 1
        if self._next > 9999:
            raise RuntimeError("the bench ran out of recipients")
        return self._next


def _sms(number: int) -> dict[str, str]:
    return {"to": f"+1415555{number:04d}", "body": "State path bench"}


def _headers(number: int) -> dict[str, str]:
    # The local host checks no key, but the app names its caller by the key it was sent.
    return {"Idempotency-Key": uuid.uuid4().hex, "x-functions-key": f"bench-{number % CALLERS}"}


def _send(session: requests.Session, host: _Host, numbers: _Numbers) -> requests.Response:
    number = numbers.next()
    return session.post(
        f"{host.url}/api/SendSms", json=_sms(number), headers=_headers(number), timeout=60
    )


def _callback(
    session: requests.Session, host: _Host, validator: RequestValidator, sid: str, status: str
) -> requests.Response:
    """A message status callback as Twilio signs it (the app's public URL is the host's)."""
    url = f"{host.url}/api/StatusCallback"
    form = {
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": FROM_NUMBER,
        "MessageSid": sid, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
        "To": "+14155550100",
    }  # fmt: skip
    signature = validator.compute_signature(url, form)
    return session.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=60)


def _expect_created(response: requests.Response, host: _Host) -> None:
    if response.status_code != 201:
        raise RuntimeError(
            f"SendSms answered {response.status_code}: {response.text[:300]}\n{host.log()[-2000:]}"
        )


# Processes ----------------------------------------------------------------------------


def _app_environment(twilio: CountingTwilio) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_APP_PREFIXES) and k not in _APP_KEYS
    }
    env.update(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=FROM_NUMBER,
        TWILIO_API_BASE_URL=twilio.url,
        REQUESTS_CA_BUNDLE=str(twilio.ca_file),  # the stand-in's CA, for this run only
        PYTHON_THREADPOOL_THREAD_COUNT=str(WORKER_THREADS),
        PYTHONHASHSEED="0",
        **LIMITS,
    )
    return env


@contextlib.contextmanager
def _azurite() -> Iterator[str]:
    """Azurite's table service on a free port, in memory; its `host:port`."""
    if not AZURITE_BIN.exists():
        raise RuntimeError("Azurite is missing: run `make install` (npm ci)")
    port = _free_port()
    process = subprocess.Popen(
        [str(AZURITE_BIN), "--tableHost", "127.0.0.1", "--tablePort", str(port),
         "--inMemoryPersistence", "--silent", "--skipApiVersionCheck", "--disableTelemetry",
         "--tableKeepAliveTimeout", "600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("Azurite did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass
class _Host:
    process: subprocess.Popen[str]
    log_path: Path
    url: str = ""
    drain: threading.Thread | None = field(default=None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def _hosts(envs: list[dict[str, str]], log_dir: Path) -> Iterator[list[_Host]]:
    """devhost processes, started together, each on free ports; stopped on the way out."""
    hosts: list[_Host] = []
    try:
        for index, env in enumerate(envs):
            log_path = log_dir / f"devhost-{index}.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "devhost", "--port", "0", "--sandbox-port", "0",
                     "--settings", str(log_dir / "no-settings.json")],
                    cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                )  # fmt: skip
            hosts.append(_Host(process, log_path))
        for host in hosts:
            _wait_ready(host)
        yield hosts
    finally:
        for host in hosts:
            host.process.terminate()
        for host in hosts:
            try:
                host.process.wait(10)
            except subprocess.TimeoutExpired:
                host.process.kill()
                host.process.wait(10)
            if host.drain is not None:
                host.drain.join(10)
            if host.process.stdout is not None:
                host.process.stdout.close()


def _wait_ready(host: _Host) -> None:
    assert host.process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = host.process.stdout.readline()
        if not line:
            break
        if line.startswith(READY_PREFIX):
            host.url = json.loads(line.removeprefix(READY_PREFIX))["host"]
            # Keep reading so that a chatty host never blocks on a full pipe.
            host.drain = threading.Thread(target=host.process.stdout.read, daemon=True)
            host.drain.start()
            return
    raise RuntimeError(f"devhost did not become ready:\n{host.log()[-2000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":  # a quick look at the raw numbers
    print(json.dumps(run(), indent=2))
