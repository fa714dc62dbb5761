"""The README and the pages in docs/ link to each other and to files in the repository: every relative link must
resolve, to a file that exists and, where it names one, to a heading that file has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = "```"


def pages() -> list[Path]:
    """The README and every Markdown page under docs/ (the documentation a reader follows links through)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``# comment`` in a bash block is no heading, a ``](x)`` no link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(FENCE):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {heading_anchor(line.lstrip("#")) for line in prose_lines(page.read_text(encoding="utf-8"))
            if line.startswith("#")}


def relative_links(page: Path) -> list[str]:
    return [link for line in prose_lines(page.read_text(encoding="utf-8")) for link in LINK.findall(line)
            if not re.match(r"[a-z]+:", link)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file is missing, or whose ``#anchor`` no heading of that file makes."""
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link} (no such heading)")
    return broken


def test_heading_anchors_follow_github():
    assert heading_anchor(" A model that knows its targets: `rwku plant`") == "a-model-that-knows-its-targets-rwku-plant"
    assert heading_anchor("Running the paper's study on a GPU machine") == "running-the-papers-study-on-a-gpu-machine"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# Here\n", encoding="utf-8")
    page.write_text("[a](there.md#here) [b](there.md#gone) [c](missing.md) [d](https://example.org)\n"
                    "```bash\n# [e](in-code.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["there.md#gone (no such heading)", "missing.md (no such file)"]


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def linked_pages(page: Path) -> set[Path]:
    return {(page.parent / link.partition("#")[0]).resolve() for link in relative_links(page)
            if link.partition("#")[0].endswith(".md")}


def reachable(start: Path) -> set[Path]:
    """The Markdown pages a reader reaches from ``start`` by following links."""
    seen, todo = set(), [start.resolve()]
    while todo:
        page = todo.pop()
        if page not in seen and page.exists():
            seen.add(page)
            todo.extend(linked_pages(page))
    return seen


def test_the_readme_is_a_front_door():
    """Under 250 lines, and every page of docs/ can be reached from it by following links."""
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) < 250
    assert {page.resolve() for page in (ROOT / "docs").glob("*.md")} <= reachable(readme)
