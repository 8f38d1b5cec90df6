"""Fixtures shared by every test layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from devtools.server import ROOT

# `make test` runs four tests at a time on two cores (pytest-xdist, see the Makefile): how long
# one generated case takes is then the machine's load, not the code's, so no example has a
# deadline (a test that needs one says so in its own @settings).
settings.register_profile("lottery", deadline=None)
settings.load_profile("lottery")

DATASET = (ROOT.parent / "shared" / "dataset").resolve()
DATASET_COUNTS = {1: 26936, 2: 25518, 3: 16014, 4: 9238, 5: 991}


@pytest.fixture(scope="session")
def dataset() -> Path:
    """The course's real agency files (../shared/dataset), or a clear skip from a plain clone."""
    if not (DATASET / "agency-1.csv").exists():
        pytest.skip(f"course dataset not found at {DATASET} (../shared is absent in a plain clone)")
    return DATASET


# -- Reliability figures (tests/figures.py) ------------------------------------------------

_outcomes: dict[str, str] = {}  # node id -> outcome so far, until its teardown


def pytest_sessionstart(session: pytest.Session) -> None:  # noqa: ARG001 - pytest's hook signature
    from tests import figures

    figures.begin_session()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Join each test's outcome to the figures it recorded, once its teardown is over."""
    from tests import figures

    outcome = _outcomes.get(report.nodeid, "passed")
    if report.failed:
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped and outcome == "passed":
        outcome = "skipped"
    _outcomes[report.nodeid] = outcome
    if report.when == "teardown":
        figures.finish_test(report.nodeid, _outcomes.pop(report.nodeid))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ARG001
    """Print what the fault and fuzz tests measured, with each test's outcome (README "Reliability")."""
    from tests import figures

    figures.finish_session()
    records = figures.session_records()
    if not records:
        return
    terminalreporter.write_sep("=", "Reliability figures")
    for line in figures.table(records):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(one JSON line per test in {figures.path()}; '-': not measured by that test)")
