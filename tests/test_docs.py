"""The README and docs/: every relative link reaches a file, every #anchor a heading there.

Anchors are GitHub's: a heading's text, lowercased, punctuation other than hyphens and
underscores dropped, each space a hyphen; a repeated heading gets -1, -2, … Links in code
(fenced blocks, inline spans) are not links, so they are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_CODE_SPAN = re.compile(r"`[^`]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a fenced line becomes empty)."""
    lines, fence = [], None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text()):
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    prose = _CODE_SPAN.sub("", "\n".join(prose_lines(path.read_text())))
    return _LINK.findall(prose) + _DEFINITION.findall(prose)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link in `path` whose file is missing, or whose #anchor names no heading
    of that markdown file, with why."""
    broken = []
    for target in links(path):
        if _SCHEME.match(target):
            continue  # http(s), mailto: not ours to check offline
        file_part, _, anchor = target.partition("#")
        if not file_part:
            file = path
        elif file_part.startswith("/"):
            file = root / unquote(file_part).lstrip("/")
        else:
            file = path.parent / unquote(file_part)
        file = file.resolve()
        if not file.is_relative_to(root.resolve()) or not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not markdown")
        elif anchor and anchor not in anchors(file):
            broken.append(f"{target}: no heading {anchor!r} in {file.name}")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_every_relative_link_reaches_a_file_and_a_heading(path: Path) -> None:
    assert links(path), f"{path.name} links nowhere"
    assert broken_links(path) == []


def test_the_link_check_finds_broken_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text(
        "# B\n\n## `GET|POST /api/TwiML`\n\n## Why `X_Y` matters\n"
    )
    (tmp_path / "image.png").write_bytes(b"")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n## Quick start\n\n## Quick start\n\n"
        "[ok](#quick-start) [ok](#quick-start-1) [ok](docs/b.md#getpost-apitwiml)\n"
        "[ok](docs/b.md#why-x_y-matters) ![ok](image.png) [ok](https://example.com/missing)\n"
        "[gone](docs/missing.md) [gone](#quick-start-2) [gone](docs/b.md#twiml)\n"
        "[gone](image.png#top) [gone](../outside.md) [split\nover lines](docs/b.md#b-1)\n"
        "`[code](docs/missing.md)`\n\n```md\n[code](docs/missing.md)\n# Not a heading\n```\n"
        "[gone](#not-a-heading)\n\n[ref]: docs/gone.md\n"
    )
    assert broken_links(readme, root=tmp_path) == [
        "docs/missing.md: no such file",
        "#quick-start-2: no heading 'quick-start-2' in README.md",
        "docs/b.md#twiml: no heading 'twiml' in b.md",
        "image.png#top: an anchor into a file that is not markdown",
        "../outside.md: no such file",
        "docs/b.md#b-1: no heading 'b-1' in b.md",
        "#not-a-heading: no heading 'not-a-heading' in README.md",
        "docs/gone.md: no such file",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("`POST /api/SendSms`", "post-apisendsms"),
        ("`Idempotency-Key` (SendSms, MakeCall)", "idempotency-key-sendsms-makecall"),
        ("`GET /api/messages/{sid}`, `GET /api/calls/{sid}`", "get-apimessagessid-get-apicallssid"),
        ("Why `PUBLIC_BASE_URL` matters", "why-public_base_url-matters"),
        (
            "Security: what the app guarantees, and what it leaves to Twilio",
            "security-what-the-app-guarantees-and-what-it-leaves-to-twilio",
        ),
        ("What `azd up` creates", "what-azd-up-creates"),
        ("See [the docs](docs/api.md) — now", "see-the-docs--now"),
    ],
)
def test_anchors_follow_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_each_doc_says_what_it_is_for_and_links_back_to_the_readme() -> None:
    for path in DOCS[1:]:
        title, purpose = path.read_text().split("\n\n")[:2]
        assert title.startswith("# "), path.name
        assert "](../README.md)" in purpose, path.name


def test_the_readme_links_every_doc_and_reaches_the_first_sms_within_60_lines() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    assert {f"docs/{path.name}" for path in DOCS[1:]} <= linked
    lines = readme.splitlines()
    start = lines.index("## Quick start")
    first_sms = next(i for i, line in enumerate(lines) if "/api/SendSms" in line and i > start)
    assert lines[first_sms].endswith("\\") and '"body"' in lines[first_sms + 1]
    assert first_sms + 1 - start + 1 < 60
