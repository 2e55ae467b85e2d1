"""`python -m bench.mutation` (the end of `make mutate`): mutmut's results → bench/MUTATION.md.

Reads what `mutmut run` left in mutants/ (one `<module>.py.meta` per module of shared/:
each mutant's name and the exit code of the tests run against it) and writes one row per
module: killed, survived, equivalent, score. A surviving mutant is *equivalent* when it is
listed in bench/mutation_equivalents.toml with the reason it cannot change behaviour;
equivalents count as explained, not as killed: score = killed / (total - equivalent).
Mutants no selected test reaches ("no tests") count as survivors.

Exits non-zero when a module of GOAL scores under 90 %, when a mutant of GOAL was not run,
or when the equivalents file lists a mutant that no longer exists or was killed (the list
must describe this code, not an older one).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "bench" / "MUTATION.md"
EQUIVALENTS = ROOT / "bench" / "mutation_equivalents.toml"
MUTANTS = ROOT / "mutants" / "shared"
# The money and security code (issue 16): each must kill at least THRESHOLD of its mutants.
GOAL = (
    "webhooks", "limits", "idempotency", "policy", "phone", "twiml", "twilio_errors",
    "caller", "jwt_auth",
)  # fmt: skip
THRESHOLD = 0.90

# mutmut's exit codes (mutmut/stats.py, status_by_exit_code): the test run's, or its own.
KILLED = {1, 3}  # a test failed; pytest's internal error counts as a kill in mutmut too
TIMEOUT = {36, 24, -24, 152, 255}  # the tests never finished: detected, counted as killed
SURVIVED = {0}
NO_TESTS = {5, 33}  # no selected test reaches the mutated function


@dataclass
class Module:
    name: str
    killed: int = 0
    timeout: int = 0
    survived: list[str] = field(default_factory=list)  # run, and every test passed
    no_tests: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # never run, or an odd exit code

    @property
    def total(self) -> int:
        return (
            self.killed + self.timeout + len(self.survived) + len(self.no_tests)
            + len(self.equivalent) + len(self.not_run)
        )  # fmt: skip

    @property
    def score(self) -> float | None:
        counted = self.total - len(self.equivalent)
        return (self.killed + self.timeout) / counted if counted else None


def read_results(mutants: Path, equivalents: Mapping[str, str]) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for meta in sorted(mutants.glob("*.py.meta")):
        name = meta.name.removesuffix(".py.meta")
        module = modules.setdefault(name, Module(name))
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for mutant, code in sorted(codes.items()):
            if code in KILLED:
                module.killed += 1
            elif code in TIMEOUT:
                module.timeout += 1
            elif mutant in equivalents and code in SURVIVED:
                module.equivalent.append(mutant)
            elif code in SURVIVED:
                module.survived.append(mutant)
            elif code in NO_TESTS:
                module.no_tests.append(mutant)
            else:
                module.not_run.append(mutant)
    return {name: module for name, module in modules.items() if module.total}


def load_equivalents(path: Path) -> dict[str, str]:
    """Mutant name → why it cannot change behaviour (one line each)."""
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    reasons: dict[str, str] = data.get("equivalent", {})
    return reasons


def problems(modules: Mapping[str, Module], equivalents: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    for name in GOAL:
        module = modules.get(name)
        if module is None:
            found.append(f"{name}: no results (was mutmut run?)")
            continue
        if module.not_run:
            found.append(f"{name}: {len(module.not_run)} mutants not run")
        score = module.score
        if score is None or score < THRESHOLD:
            found.append(f"{name}: {_percent(score)} killed, under {THRESHOLD * 100:.0f} %")
    explained = {mutant for module in modules.values() for mutant in module.equivalent}
    for mutant in sorted(set(equivalents) - explained):
        found.append(f"{mutant}: listed as equivalent but not a surviving mutant of this code")
    return found


def render(
    modules: Mapping[str, Module],
    equivalents: Mapping[str, str],
    seconds: float | None,
    note: str | None = None,
) -> str:
    try:
        version = metadata.version("mutmut")
    except metadata.PackageNotFoundError:  # only `make mutate` installs it
        version = "(not installed)"
    took = f" · {seconds / 60:.1f} min" if seconds is not None else ""
    lines = [
        "# Mutation testing of shared/",
        "",
        f"Command: `make mutate` · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{took} · mutmut {version}",
        f"· Python {platform.python_version()} · {platform.platform()}.",
        "Generated by bench/mutation.py from mutmut's results; the tests each mutant faces are",
        "`[tool.mutmut]` in pyproject.toml. Score = killed ÷ (total - equivalent); a timeout",
        "counts as killed, a mutant no selected test reaches (*no tests*) as surviving.",
        f"Goal (issue 16): ≥ {THRESHOLD:.0%} in each module marked ★.",
        *([note] if note else []),
        "",
        "| module | total | killed | timeout | survived | no tests | equivalent | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ordered = [modules[n] for n in GOAL if n in modules]
    ordered += [m for n, m in sorted(modules.items()) if n not in GOAL]
    for module in ordered:
        lines.append(_row(f"{module.name} ★" if module.name in GOAL else module.name, [module]))
    goal = [m for m in ordered if m.name in GOAL]
    lines.append(_row("**★ modules**", goal))
    lines.append(_row("**all of shared/**", ordered))
    lines += ["", "## Surviving mutants in the ★ modules", ""]
    left = [(m, s) for m in goal for s in m.survived + m.no_tests + m.not_run]
    lines += [f"- `{name}`" for _, name in left] or ["None."]
    lines += [
        "",
        "## Equivalent mutants",
        "",
        "Survivors that cannot change behaviour, with the reason"
        " (bench/mutation_equivalents.toml):",
        "",
    ]
    listed = [(n, equivalents[n]) for m in ordered for n in m.equivalent]
    lines += [f"- `{name}`: {reason}" for name, reason in listed] or ["None."]
    lines.append("")
    return "\n".join(lines)


def _row(label: str, modules: list[Module]) -> str:
    merged = Module(label)
    for m in modules:
        merged.killed += m.killed
        merged.timeout += m.timeout
        merged.survived += m.survived
        merged.no_tests += m.no_tests
        merged.equivalent += m.equivalent
        merged.not_run += m.not_run
    cells = [
        merged.total, merged.killed, merged.timeout, len(merged.survived),
        len(merged.no_tests), len(merged.equivalent),
    ]  # fmt: skip
    return f"| {label} | {' | '.join(map(str, cells))} | {_percent(merged.score)} |"


def _percent(score: float | None) -> str:
    # Floored, not rounded: 89.96 % is not 90 %.
    return "–" if score is None else f"{int(score * 1000) / 10:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__)
    parser.add_argument("--seconds", type=float, help="how long mutmut run took, for the report")
    parser.add_argument("--mutants", type=Path, default=MUTANTS, help="mutmut's mutants/shared")
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--note", help="a line for the report, e.g. how this run was made")
    args = parser.parse_args(argv)
    equivalents = load_equivalents(EQUIVALENTS)
    modules = read_results(args.mutants, equivalents)
    args.report.write_text(render(modules, equivalents, args.seconds, args.note))
    print(args.report.read_text())
    found = problems(modules, equivalents)
    for problem in found:
        print(f"mutation: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
