"""The README and docs/: links that resolve inside the repository, a short README that starts with the two commands,
and no path that points outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
OUTSIDE = "../" + "shared"  # split so that this file does not contain it


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {anchor(heading) for heading in HEADING.findall(text)}


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def link_problem(page: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``page``) is broken, or None."""
    path, _, fragment = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    if not resolved.is_relative_to(ROOT):
        return "points outside the repository"
    if not resolved.exists():
        return "no such file"
    if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
        return f"{resolved.name} has no heading with anchor #{fragment}"
    return None


def test_docs_pages_exist():
    assert len(PAGES) > 1, "docs/ holds no .md page"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    links = relative_links(page)
    broken = [f"{target}: {why}" for target in links if (why := link_problem(page, target))]
    assert broken == [], f"{page.relative_to(ROOT)}: broken links"


def test_link_check_catches_a_broken_link(tmp_path):
    assert link_problem(README, "docs/no-such-page.md") == "no such file"
    assert link_problem(README, "docs/model.md#no-such-heading") is not None
    assert link_problem(README, "../outside.md") == "points outside the repository"
    assert link_problem(README, "docs/model.md") is None


def test_readme_is_short():
    n_lines = len(README.read_text().splitlines())
    assert n_lines < 300, f"README.md has {n_lines} lines; move details into docs/"


def test_readme_starts_with_the_two_commands():
    blocks = [block.strip() for block in FENCE.findall(README.read_text())[:2]]
    assert blocks == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert README.read_text().index("```") < README.read_text().index("\n## "), "the commands come before any section"


def test_no_tracked_file_points_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    offenders = []
    for name in filter(None, tracked):
        try:
            text = (ROOT / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files (screenshots, results plots), or deleted in the work tree
        if OUTSIDE in text:
            offenders.append(name)
    assert offenders == [], f"these files mention {OUTSIDE}"
