"""`python -m bench` (make bench): run every benchmark, write bench/RESULTS.md, print it.

Each figure is a ratio of two things measured side by side in this one run. Numbers are
reported, never judged: the exit status is non-zero only when a benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTIONS = ("cold", "overhead", "connections", "broadcast", "state")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    args = parser.parse_args(argv)
    wanted = args.only or list(SECTIONS)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    from bench import report

    results: dict[str, Any] = {}
    failures: list[str] = []
    for section in wanted:
        print(f"bench: {section} …", file=sys.stderr, flush=True)
        try:
            results[section] = _run(section)
        except Exception as exc:  # a broken benchmark must fail make bench, loudly
            failures.append(f"{section}: {type(exc).__name__}: {exc}")
            print(f"bench: {section} FAILED: {exc}", file=sys.stderr, flush=True)
    text = report.render(results, failures, _machine(), " ".join(["make bench", *sys.argv[1:]]))
    if args.only is None:
        RESULTS.write_text(text)
    print(text)
    return 1 if failures else 0


def _run(section: str) -> Any:
    if section == "broadcast":
        from bench import broadcast_scale

        return broadcast_scale.run()
    if section == "state":
        from bench import state_path

        return state_path.run()
    if section == "cold":
        from bench import cold_start
        from bench.stand_ins import ACCOUNT_SID, AUTH_TOKEN
        from devhost.sandbox import SandboxConfig, create_sandbox_app
        from devhost.serving import BackgroundServer

        sandbox = BackgroundServer(
            create_sandbox_app(SandboxConfig(ACCOUNT_SID, AUTH_TOKEN))
        ).start()
        try:
            return cold_start.run(sandbox.url)
        finally:
            sandbox.stop()
    functions = _functions()
    if section == "overhead":
        from bench import overhead

        return overhead.run(functions)
    from bench import connections

    return {
        "reuse": connections.reuse(functions["SendSms"]),
        "concurrency": connections.concurrency(functions["SendSms"]),
    }


_INDEXED: dict[str, Any] = {}


def _functions() -> dict[str, Any]:
    if not _INDEXED:  # get_functions() may run once per process
        import function_app

        loop = asyncio.new_event_loop()  # async handlers (TwiML) run on one loop, as the worker's
        for function in function_app.app.get_functions():
            user_function = function.get_user_function()
            if inspect.iscoroutinefunction(user_function):
                user_function = functools.partial(_run_on, loop, user_function)
            _INDEXED[str(function.get_function_name())] = user_function
    return _INDEXED


def _run_on(loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> Any:
    return loop.run_until_complete(function(*args))


def _machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": f"{cpu} ({os.cpu_count()} logical CPUs)",
    }


if __name__ == "__main__":
    sys.exit(main())
