"""``make demo`` does what the README's quick start says it does (issue 25: the README said one
round after the demo had grown to two).

Runs the demo's own program (``make demo``'s recipe: ``python -m devtools.demo``) and checks
its output against the README's paragraph: five agencies of 20,000 generated bets drawn in
round 1, then round 2 opened by the operator with three agencies and a random number, both
rounds listed, and the files kept under the temp dir.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from devtools.server import ROOT

README = ROOT / "README.md"


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    return " ".join(text.split("## Quick start", 1)[1].split("\n## ", 1)[0].split())


def test_the_readme_describes_two_rounds():
    said = quick_start()
    assert "runs two lottery rounds on generated data" in said
    assert "five agency files (20,000 bets each)" in said
    assert "opens round 2 (three agencies, a winning number drawn at random at the draw)" in said


@pytest.mark.long  # the whole demo: two rounds on a real gunicorn (about 6 s)
def test_the_demo_does_what_the_readme_says():
    done = subprocess.run(
        [sys.executable, "-m", "devtools.demo"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    kept = re.search(r"\(delete (\S+) when done\)", done.stdout)
    if kept:  # the demo keeps its folder for a look; the test does not
        shutil.rmtree(Path(kept.group(1)), ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Generated 5 agency files with 20,000 bets each" in out
    assert re.search(r"Round 1: 100,000 bets from 5/5 agencies in [\d.]+s; drawn, winning number 7574", out), out
    assert 'POST /rounds {"agencies": 3, "winning_number": "random"}' in out
    assert re.search(
        r"Round 2: 90,000 bets from 3/3 agencies in [\d.]+s; drawn, winning number \d+ \(drawn at random\)", out
    )
    assert "round 2: drawn" in out and "round 1: drawn, 100,000 bets" in out
    assert kept and Path(kept.group(1)).is_relative_to(Path(tempfile.gettempdir()))
