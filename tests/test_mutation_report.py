"""bench/mutation.py: mutmut's verdicts become per-module scores, and the goal is enforced."""

from __future__ import annotations

import ast
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

from bench import mutation
from bench.mutation import GOAL, problems, read_results, render


def write_meta(directory: Path, module: str, codes: Mapping[str, int | None]) -> None:
    names = {f"shared.{module}.x_f__mutmut_{n}": code for n, code in codes.items()}
    (directory / f"{module}.py.meta").write_text(json.dumps({"exit_code_by_key": names}))


def test_equivalents_are_explained_not_killed_and_no_tests_count_as_survivors(
    tmp_path: Path,
) -> None:
    # 7 killed (one a timeout), one survivor explained, one survivor, one that no test reached.
    codes: dict[str, int | None] = {str(n): 1 for n in range(6)}
    codes |= {"6": 36, "7": 0, "8": 0, "9": 33}
    write_meta(tmp_path, "limits", codes)
    equivalents = {"shared.limits.x_f__mutmut_7": "a log message"}
    module = read_results(tmp_path, equivalents)["limits"]
    assert (module.total, module.killed, module.timeout) == (10, 6, 1)
    assert (module.survived, module.no_tests) == (
        ["shared.limits.x_f__mutmut_8"],
        ["shared.limits.x_f__mutmut_9"],
    )
    assert module.score == 7 / 9
    report = render({"limits": module}, equivalents, 60.0)
    assert "| limits ★ | 10 | 6 | 1 | 1 | 1 | 1 | 77.7 % |" in report
    assert "- `shared.limits.x_f__mutmut_7`: a log message" in report


def test_a_goal_module_under_90_percent_or_a_stale_equivalent_fails(tmp_path: Path) -> None:
    for module in GOAL:
        write_meta(tmp_path, module, {str(n): 1 for n in range(9)} | {"9": 0})  # 90 %
    equivalents = {"shared.limits.x_f__mutmut_3": "killed, so not equivalent"}
    modules = read_results(tmp_path, equivalents)
    assert problems(modules, {}) == []
    write_meta(tmp_path, "policy", {str(n): 1 for n in range(8)} | {"8": 0, "9": None})
    modules = read_results(tmp_path, equivalents)
    assert problems(modules, equivalents) == [
        "policy: 1 mutants not run",
        "policy: 80.0 % killed, under 90 %",
        "shared.limits.x_f__mutmut_3: listed as equivalent but not a surviving mutant of this code",
    ]


def test_the_equivalents_file_gives_a_reason_for_each_mutant() -> None:
    reasons = mutation.load_equivalents(mutation.EQUIVALENTS)
    assert reasons
    assert all(name.startswith("shared.") and reason.strip() for name, reason in reasons.items())


def test_mutmut_copies_every_blueprint_the_app_imports() -> None:
    # mutmut runs the tests in mutants/, a copy: a function folder missing from also_copy
    # makes `import function_app` fail there, and every mutant would count as killed.
    root = mutation.ROOT
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    copied = set(config["also_copy"]) | set(config["source_paths"])
    tree = ast.parse((root / "function_app.py").read_text())
    imported = {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    folders = {name for name in imported if (root / name / "__init__.py").exists()}
    assert "IncomingCall" in folders
    assert folders - copied == set()
