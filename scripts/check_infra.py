#!/usr/bin/env python3
"""checkov over the Bicep in infra/, offline; fails on anything that makes its verdict hollow.

Run by `make infra` with the tools venv's Python (.venv-tools, requirements-tools.txt).
checkov alone exits 0 when it could not parse a file (it just skips it), when a check
crashed on a resource (its result is then missing) and when a suppression has no reason.
So this fails when:
- any check failed;
- any file could not be parsed (checkov's Bicep parser lags the language: typed arrays,
  nullable types, multi-line calls and long comment runs inside objects all fail it);
- a check crashed (a traceback on checkov's stderr);
- a suppression has no reason (`checkov:skip=ID: why`, one ID per line);
- nothing was scanned (e.g. resources moved into registry modules, which checkov never sees).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

NO_REASON = "No comment provided"


def main(directory: str) -> int:
    checkov = shutil.which("checkov", path=str(Path(sys.executable).parent))
    if checkov is None:
        print("check-infra: checkov is not installed in this venv (make installs it)")
        return 1
    files = sorted(Path(directory).rglob("*.bicep"))
    run = subprocess.run(
        [checkov, "-d", directory, "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    problems: list[str] = []
    if "Traceback" in run.stderr:
        problems.append("a check crashed (its result is missing):\n" + run.stderr.strip())
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"check-infra: checkov did not report (exit {run.returncode}):\n{run.stderr}")
        return 1
    if isinstance(report, list):  # one report per framework; only bicep was asked for
        report = next((r for r in report if r.get("check_type") == "bicep"), {})
    results = report.get("results", {})
    summary = report.get("summary", {})
    for check in results.get("failed_checks", []):
        lines = "-".join(str(n) for n in check.get("file_line_range", []))
        problems.append(
            f"{check['check_id']} failed: {check['check_name']}\n"
            f"    {check['resource']} in {directory}{check['file_path']}:{lines}"
        )
    for path in results.get("parsing_errors", []):
        problems.append(f"could not parse {path}: checkov skipped it, so nothing in it was checked")
    for check in results.get("skipped_checks", []):
        reason = check.get("check_result", {}).get("suppress_comment", "").strip()
        if not reason or reason == NO_REASON:
            problems.append(
                f"{check['check_id']} on {check['resource']} is skipped without a reason"
            )
    passed = summary.get("passed", 0)
    skipped = summary.get("skipped", 0)
    if not files or passed + skipped == 0:
        problems.append(f"checkov checked nothing in {directory} ({len(files)} Bicep files)")
    for problem in problems:
        print(f"check-infra: {problem}")
    if problems:
        return 1
    print(
        f"check-infra: checkov {summary.get('checkov_version')} on {len(files)} Bicep files: "
        f"no failed check ({passed} passing, {skipped} skipped, each with its reason), "
        f"no parse error"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "infra"))
