"""Every relative link in the README and docs/ leads somewhere: the file exists, and an
``#anchor`` names one of its headings (as GitHub makes anchors of them). Material moves
between the README and docs/; a link left pointing at the old place fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.server import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces made hyphens."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6} (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]  # not http:, mailto:


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path):
    assert links(page) or page.name != "README.md"
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target}: no such file"
        if anchor:
            assert anchor in anchors(file), f"{page.name}: {target}: no heading with that anchor in {file.name}"


def test_anchors_follow_github():
    assert anchors(ROOT / "docs" / "uploader.md") >= {
        "the-uploader-python--m-client",
        "resuming-an-upload-what-may-change-in-the-file-between-runs",
    }
