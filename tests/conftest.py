"""Fixtures shared by every test layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.server import ROOT

DATASET = (ROOT.parent / "shared" / "dataset").resolve()
DATASET_COUNTS = {1: 26936, 2: 25518, 3: 16014, 4: 9238, 5: 991}


@pytest.fixture(scope="session")
def dataset() -> Path:
    """The course's real agency files (../shared/dataset), or a clear skip from a plain clone."""
    if not (DATASET / "agency-1.csv").exists():
        pytest.skip(f"course dataset not found at {DATASET} (../shared is absent in a plain clone)")
    return DATASET


# -- Reliability figures (tests/figures.py) ------------------------------------------------


def pytest_sessionstart(session: pytest.Session) -> None:  # noqa: ARG001 - pytest's hook signature
    from tests import figures

    figures.begin_session()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ARG001
    """Print what the fault and fuzz tests measured, for the README's "Reliability" section."""
    from tests import figures

    records = figures.session_records()
    if not records:
        return
    terminalreporter.write_sep("=", "Reliability figures")
    for line in figures.table(records):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(one JSON line per test in {figures.path()})")
