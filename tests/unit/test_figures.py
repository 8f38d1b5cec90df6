"""The reliability table keeps each test's outcome with its figures, and prints no made-up number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.figures import ROOT, table

SUITE = """
from collections import Counter

from tests.figures import lost_and_duplicated, record

def test_measures_then_fails():
    sent, read_back = Counter(["a", "b", "c"]), Counter(["a", "b"])  # what a run sent and found stored
    kills = ["worker 1", "worker 2", "worker 3"]
    lost, _ = lost_and_duplicated(sent, read_back)
    record("measured, then failed", faults=len(kills), lost=lost)
    assert lost == 0, "one bet lost"

def test_measures_and_passes():
    inputs = list(range(10))
    record("measured and passed", fuzzed=len(inputs))
    statuses = [201 for _ in inputs]
    record("measured and passed", errors_5xx=sum(s >= 500 for s in statuses))  # the same figure, in two steps

def test_fails_before_measuring():
    assert False
"""


def test_a_session_writes_each_figure_with_its_tests_outcome(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_logreport, pytest_sessionstart, pytest_terminal_summary\n"
    )
    (tmp_path / "test_suite.py").write_text(SUITE)
    figures = tmp_path / "figures.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_suite.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LOTTERY_FIGURES_FILE": str(figures)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [json.loads(line) for line in figures.read_text().splitlines()]
    assert [{k: v for k, v in line.items() if k not in ("time", "nodeid")} for line in lines] == [
        {"test": "measured, then failed", "outcome": "failed", "faults": 3, "lost": 1},
        {"test": "measured and passed", "outcome": "passed", "fuzzed": 10, "errors_5xx": 0},
    ]
    assert [line["nodeid"] for line in lines] == [
        "test_suite.py::test_measures_then_fails",
        "test_suite.py::test_measures_and_passes",
    ]
    summary = done.stdout[done.stdout.index("Reliability figures") :].splitlines()
    rows = {line.split("  ")[0]: line.split() for line in summary if line.startswith(("measured", "total"))}
    assert rows["measured, then failed"][-6:] == ["failed", "3", "-", "-", "1", "-"]
    assert rows["measured and passed"][-6:] == ["passed", "-", "10", "0", "-", "-"]
    assert rows["total"][1:] == ["1", "failed,", "1", "passed", "3", "10", "0", "1", "-"]


def test_a_figure_no_test_measured_is_not_printed_as_zero() -> None:
    header, _, row, _, totals = table([{"test": "t", "outcome": "passed", "fuzzed": 5}])
    assert row.split() == ["t", "passed", "-", "5", "-", "-", "-"]
    assert totals.split() == ["total", "1", "passed", "-", "5", "-", "-", "-"]
