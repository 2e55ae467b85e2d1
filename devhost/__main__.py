"""`make run` (`.venv/bin/python -m devhost`): the local Functions host (and, without
credentials, the Twilio sandbox).

Loads local.settings.json `Values` into the environment as `func start` does (variables
already set in the environment win), has azure-functions-runtime (the worker Azure runs)
index function_app.py, and serves its HTTP functions through that worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from devhost.access_log import access_logger
from devhost.console import add_console
from devhost.durable.standin import DurableStandIn, StoreUnreachable, open_store
from devhost.guard import local_only
from devhost.host import (
    HttpRoute,
    add_admin_routes,
    add_function_routes,
    create_host_app,
    describe,
    http_routes,
    route_prefix,
    timer_functions,
)
from devhost.inbound_calls import INBOUND
from devhost.sandbox import (
    MAGIC_SENDERS,
    SANDBOX,
    TEST_SENDER,
    SandboxConfig,
    create_sandbox_app,
)
from devhost.worker import IndexedFunction, InProcessWorker, WorkerRefused
from shared import inbound_calls
from shared.errors import InvalidSetting
from shared.inbound import INCOMING_SMS_ROUTE
from shared.phone import InvalidPhoneNumber, to_e164
from shared.settings import development_storage, load_settings

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_ACCOUNT_SID = "AC" + "0" * 32
SANDBOX_FROM_NUMBER = TEST_SENDER
TEST_NUMBER_PREFIX = "+1500555"
# What sandbox mode sets when the user has not: nothing leaves the machine, so the app's
# policy may let through what the README and the console offer, as often as one tries.
SANDBOX_DEFAULTS = {
    "TWILIO_FROM_NUMBER": SANDBOX_FROM_NUMBER,
    # Twilio's test numbers (+1 500 555 …) are "personal" numbers, which the number type
    # policy refuses: let them through where nothing is ever sent.
    "NUMBER_TYPE_EXCEPTIONS": TEST_NUMBER_PREFIX,
    # The sandbox's sender and Twilio's magic senders, so that `from` can try them: the app
    # refuses any sender it does not allow before Twilio is asked.
    "TWILIO_ALLOWED_SENDERS": ",".join([SANDBOX_FROM_NUMBER, *sorted(MAGIC_SENDERS)]),
    # Loose enough to try the examples over and over (the defaults allow 5 an hour to one
    # number), still there to be seen.
    "LIMIT_PER_DESTINATION": "100/hour",
    "LIMIT_PER_CALLER": "1000/hour",
    "LIMIT_GLOBAL": "10000/day",
}
LIMIT_KEYS = ("LIMIT_PER_DESTINATION", "LIMIT_PER_CALLER", "LIMIT_GLOBAL")
READY_PREFIX = "devhost: ready "
# After SIGTERM or Ctrl-C, how long an orderly stop may take before the process exits
# anyway. A function thread in a Twilio call to this very process's sandbox (whose loop is
# stopping) waits out its 10 s timeout; once, on a loaded machine, the cleanup never ended.
STOP_DEADLINE_SECONDS = 15.0
# Child processes to stop even then (the Azurite of `make run AZURITE=1`).
_children: list[subprocess.Popen[bytes]] = []
AZURITE_PORT = 10002  # Azurite's default table port, which UseDevelopmentStorage=true means
_BROADCAST_EXAMPLE = (
    "  curl -s -X POST {host_url}/{prefix}/broadcasts -H 'Content-Type: application/json' "
    '-d \'{{"to": ["+14155550100", "+14155550101"], "body": "Hello, everyone"}}\''
)

logger = logging.getLogger("devhost")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    load_local_settings(Path(args.settings))
    # What Core Tools sets for `func start`: the app knows it runs on a developer's machine.
    os.environ.setdefault("AZURE_FUNCTIONS_ENVIRONMENT", "Development")
    sandbox = args.sandbox or not os.environ.get("TWILIO_ACCOUNT_SID", "").strip()
    token = secrets.token_hex(16) if sandbox else None  # fresh per run: nothing to leak
    if token is not None:
        # The sandbox's URL is known once it listens; until then its address stands in.
        provisional = f"http://{args.host}:{args.sandbox_port}"
        os.environ.update(sandbox_settings(os.environ, token, provisional))
    try:
        # What the app would answer every request with (a 500 naming the setting): say it
        # once, here, rather than print "ready".
        inbound_calls.check_settings(load_settings(os.environ))
    except InvalidSetting as exc:
        sys.exit(
            f"devhost: cannot start: setting {exc.key} must be {exc.expected} "
            "(in local.settings.json or the environment)."
        )
    # `kill` (and make's shutdown) send SIGTERM: exit through the finally blocks, so the
    # Azurite child and the listening sockets go away with us; Ctrl-C does the same. Either
    # way the process is gone within STOP_DEADLINE_SECONDS.
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        with azurite_if(args.azurite):
            asyncio.run(serve(args, token))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # typically a port taken by another devhost or func start
        sys.exit(
            f"devhost: cannot listen: {exc.strerror}. Pick other ports: "
            "`make run PORT=… SANDBOX_PORT=…` (devhost's --port/--sandbox-port)."
        )
    except WorkerRefused as exc:  # what Azure would log as "Worker failed to index functions"
        sys.exit(f"devhost: the Functions worker refused the app: {exc}")
    except StoreUnreachable as exc:
        sys.exit(f"devhost: {exc}")


def load_local_settings(path: Path) -> None:
    if not path.exists():
        print(f"devhost: {path} not found; using the environment only", file=sys.stderr)
        return
    values = json.loads(path.read_text()).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


def _on_sigterm(signum: int, frame: object) -> None:
    exit_within(STOP_DEADLINE_SECONDS)
    sys.exit(0)


def _on_sigint(signum: int, frame: object) -> None:
    exit_within(STOP_DEADLINE_SECONDS)
    raise KeyboardInterrupt


def exit_within(seconds: float) -> None:
    """Make sure the process ends `seconds` from now, orderly or not: a stop that hangs
    must not leave `make run` (or a test's host) running after it was told to go."""

    def exit_now() -> None:
        print(f"devhost: still stopping after {seconds:g} s; exiting now", file=sys.stderr,
              flush=True)  # fmt: skip
        for child in _children:
            child.kill()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


@contextlib.contextmanager
def azurite_if(port: int | None, location: Path = ROOT / ".azurite") -> Iterator[None]:
    """Run Azurite's table service on 127.0.0.1:`port` (data in `location`) and point the
    state store at it."""
    if port is None:
        yield
        return
    binary = ROOT / "node_modules" / ".bin" / "azurite-table"
    if not binary.exists():
        sys.exit("devhost: Azurite is not installed; `make run AZURITE=1` installs it (npm ci).")
    if _taken(port):
        sys.exit(
            f"devhost: 127.0.0.1:{port} is taken (another Azurite?); pick another port with "
            "`make run AZURITE=1 AZURITE_PORT=…`."
        )
    location.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [str(binary), "--tableHost", "127.0.0.1", "--tablePort", str(port), "--location",
         str(location), "--silent", "--skipApiVersionCheck", "--disableTelemetry"],
    )  # fmt: skip
    _children.append(process)
    try:
        if not _listening(port, process):
            sys.exit(f"devhost: Azurite did not start on 127.0.0.1:{port}.")
        connection = os.environ.get("STATE_STORE_CONNECTION", "").strip()
        if not connection or connection.replace(" ", "").lower() == "usedevelopmentstorage=true":
            os.environ["STATE_STORE_CONNECTION"] = development_storage(port)
        print(
            f"devhost: Azurite table service on 127.0.0.1:{port} (data in {location})", flush=True
        )
        yield
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> bool:
    """Whether `process` listens on 127.0.0.1:`port` within `seconds` (False once it exits)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if _taken(port):
            return True
        time.sleep(0.1)
    return False


def _taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def serve(args: argparse.Namespace, sandbox_token: str | None) -> None:
    """Serve the app, and the sandbox (as account SANDBOX_ACCOUNT_SID with `sandbox_token`)
    unless that is None."""
    host, port = args.host, args.port
    runners: list[web.AppRunner] = []
    sandbox_url = None
    sandbox_app = None
    if sandbox_token is not None:
        config = sandbox_config(sandbox_token, args.sandbox_internet, os.environ)
        sandbox_app = create_sandbox_app(config)
        sandbox_app.middlewares.append(local_only())
        sandbox_url = await _start(sandbox_app, host, args.sandbox_port, runners)
        os.environ["TWILIO_API_BASE_URL"] = sandbox_url

    # The worker indexes the app once the environment is complete (CALLER_AUTH decides
    # auth levels at import, as on Azure).
    worker = InProcessWorker(ROOT)
    indexed = await worker.start()
    durable = await start_durable(worker, indexed, ROOT / "host.json")
    prefix = route_prefix(ROOT / "host.json")
    routes = http_routes(indexed, prefix)
    public_host = urlsplit(os.environ.get("PUBLIC_BASE_URL", "")).netloc
    host_app = create_host_app([public_host] if public_host else [])
    if sandbox_app is not None:
        add_console(host_app, sandbox_app, durable)
    client_binding = durable.client_binding if durable else None
    add_admin_routes(host_app, worker, indexed, client_binding)  # before the catch-all routes
    add_function_routes(host_app, worker, routes, client_binding)
    host_url = await _start(host_app, host, port, runners)
    if not os.environ.get("PUBLIC_BASE_URL", "").strip():
        os.environ["PUBLIC_BASE_URL"] = host_url
    elif os.environ["PUBLIC_BASE_URL"].rstrip("/") != host_url:
        logger.warning(
            "PUBLIC_BASE_URL is %s but this host is %s: Twilio signatures are checked "
            "against PUBLIC_BASE_URL",
            os.environ["PUBLIC_BASE_URL"],
            host_url,
        )
    if sandbox_app is not None:
        # The sandbox's numbers call and text the app as a Twilio number whose voice webhook is
        # IncomingCall and whose "A message comes in" webhook is IncomingSms (docs/two-way.md).
        public = os.environ["PUBLIC_BASE_URL"].rstrip("/")
        sandbox_app[INBOUND].voice_url = f"{public}/{prefix}/IncomingCall"
        sandbox_app[INBOUND].base_url = sandbox_url or ""
        sandbox_app[SANDBOX].config.incoming_sms_url = f"{public}/{prefix}/{INCOMING_SMS_ROUTE}"
    _banner(routes, prefix, host_url, sandbox_url, durable, timer_functions(indexed))
    ready = {"host": host_url, "sandbox": sandbox_url, "durable": durable and durable.rpc_base_url}
    print(f"{READY_PREFIX}{json.dumps(ready)}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        if durable is not None:
            await durable.close()


async def start_durable(
    worker: InProcessWorker, indexed: list[IndexedFunction], host_json: Path
) -> DurableStandIn | None:
    """The local stand-in for the Durable extension, configured from host.json's
    durableTask section, on the app's storage; None when the app has no orchestrator."""
    if not any(f.trigger.get("type") == "orchestrationTrigger" for f in indexed):
        return None
    options = json.loads(host_json.read_text()).get("extensions", {}).get("durableTask", {})
    hub = str(options.get("hubName", "TestHubName"))
    store = await asyncio.to_thread(open_store, os.environ, hub)
    durable = DurableStandIn(
        worker, indexed, store, task_hub=hub,
        max_activities=int(options.get("maxConcurrentActivityFunctions", 10)),
        max_orchestrators=int(options.get("maxConcurrentOrchestratorFunctions", 10)),
    )  # fmt: skip
    await durable.start()
    return durable


def sandbox_settings(environ: Mapping[str, str], token: str, sandbox_url: str) -> dict[str, str]:
    """The app's settings in sandbox mode: the sandbox's account, and SANDBOX_DEFAULTS for
    what the user left unset (empty counts as unset, as in load_settings)."""
    settings = {
        "TWILIO_ACCOUNT_SID": SANDBOX_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": token,
        "TWILIO_API_BASE_URL": sandbox_url,
        "TWILIO_API_KEY_SID": "",
        "TWILIO_API_KEY_SECRET": "",
    }
    unset = {k: v for k, v in SANDBOX_DEFAULTS.items() if not environ.get(k, "").strip()}
    return settings | unset


def sandbox_config(token: str, internet: bool, environ: Mapping[str, str]) -> SandboxConfig:
    """The sandbox's account: it owns Twilio's test sender and every sender the app is
    configured with, since it refuses any other as Twilio does (21606, 21210, 21701).
    Twilio's magic senders stay Twilio's: they answer their errors, and calls from them
    are refused as from any number the account does not own."""
    from_number = _e164_or_none(environ.get("TWILIO_FROM_NUMBER", ""))
    senders = [environ.get("TWILIO_MESSAGING_SERVICE_SID", "")]
    senders += environ.get("TWILIO_ALLOWED_SENDERS", "").split(",")
    senders = [sender.strip() for sender in senders if sender.strip()]
    numbers = [from_number] + [_e164_or_none(s) for s in senders if not s.startswith("MG")]
    return SandboxConfig(
        SANDBOX_ACCOUNT_SID,
        token,
        reach_internet=internet,
        owned_numbers=frozenset({SANDBOX_FROM_NUMBER, *filter(None, numbers)}) - MAGIC_SENDERS,
        messaging_services=frozenset(s for s in senders if s.startswith("MG")),
        # A Messaging Service sends from the app's own number when it has one.
        service_sender=from_number or SANDBOX_FROM_NUMBER,
    )


def _e164_or_none(raw: str) -> str | None:
    """The number as the app will send it; None if the app refuses it (InvalidSetting)."""
    try:
        return to_e164(raw).e164 if raw.strip() else None
    except InvalidPhoneNumber:
        return None


async def _start(app: web.Application, host: str, port: int, runners: list[web.AppRunner]) -> str:
    runner = web.AppRunner(app, access_log=access_logger())
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    runners.append(runner)
    bound_port = runner.addresses[0][1]
    return f"http://{host}:{bound_port}"


def _banner(
    functions: list[HttpRoute],
    prefix: str,
    host_url: str,
    sandbox_url: str | None,
    durable: DurableStandIn | None,
    timers: list[IndexedFunction],
) -> None:
    lines = ["", "Functions:"]
    lines += [
        f"  {name:<15} {route}" for name, route in describe(functions, prefix, host_url).items()
    ]
    if timers:
        lines += [
            "",
            "Timers: not run on their schedule here (on Azure: NCRONTAB, UTC); run one now:",
        ]
        for t in timers:
            lines += [
                f"  {t.name} ({t.trigger.get('schedule')})",
                f"  curl -X POST {host_url}/admin/functions/{t.name}",
            ]
    if durable is not None:
        registry = durable.registry
        lines += [
            "",
            "Durable Functions, on the local stand-in for the Durable extension:",
            f"  orchestrators:  {', '.join(registry.orchestrators)}",
            f"  activities:     {', '.join(registry.activities)}",
            f"  instances in:   {durable.store_name}",
            f"  extension API:  {durable.rpc_base_url}",
        ]
    if sandbox_url:
        lines += [
            "",
            "*** SANDBOX MODE: no Twilio credentials configured. Nothing leaves this machine. ***",
            f"  Console:         {host_url}/sandbox/",
            f"  Twilio sandbox:  {sandbox_url}",
            f"  Account SID:     {os.environ['TWILIO_ACCOUNT_SID']}",
            f"  Auth token:      {os.environ['TWILIO_AUTH_TOKEN']}  (the sandbox's own, local "
            "and throwaway: new at each start)",
            f"  Limits:          {', '.join(f'{k}={os.environ[k]}' for k in LIMIT_KEYS)}",
            f"  What it sent:    curl {sandbox_url}/sandbox/messages",
            f"  What it called:  curl {sandbox_url}/sandbox/calls",
        ]
    else:
        api = os.environ.get("TWILIO_API_BASE_URL") or "Twilio"
        lines += ["", f"Requests go to {api} as account {os.environ.get('TWILIO_ACCOUNT_SID')}."]
    lines += [
        "",
        "Try:",
        f"  curl -s {host_url}/{prefix}/health",
        f"  curl -s -X POST {host_url}/{prefix}/SendSms -H 'Content-Type: application/json' "
        '-d \'{"to": "+14155550100", "body": "Hello from Azure Functions"}\'',
        f"  curl -s -X POST {host_url}/{prefix}/MakeCall -H 'Content-Type: application/json' "
        '-d \'{"to": "+14155550100", "message": "Hello from Azure Functions"}\'',
        *([_BROADCAST_EXAMPLE.format(host_url=host_url, prefix=prefix)] if durable else []),
        "",
    ]
    print("\n".join(lines), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=".venv/bin/python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="host port (0: any free port)")
    parser.add_argument("--sandbox-port", type=int, default=7072, help="sandbox port (0: any)")
    parser.add_argument("--settings", default=str(ROOT / "local.settings.json"))
    parser.add_argument(
        "--azurite", type=int, nargs="?", const=AZURITE_PORT, metavar="PORT",
        help=f"start Azurite's table service on 127.0.0.1:PORT (default {AZURITE_PORT}) and keep "
        "state in it",
    )  # fmt: skip
    parser.add_argument(
        "--sandbox-internet", action="store_true",
        help="let the sandbox fetch TwiML from and post callbacks to hosts beyond 127.0.0.1",
    )  # fmt: skip
    parser.add_argument(
        "--sandbox", action="store_true", help="use the sandbox even with credentials"
    )
    return parser


if __name__ == "__main__":
    main()
