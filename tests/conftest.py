"""Fixtures shared by every test layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.launcher import ROOT

DATASET = (ROOT.parent / "shared" / "dataset").resolve()
DATASET_COUNTS = {1: 26936, 2: 25518, 3: 16014, 4: 9238, 5: 991}


@pytest.fixture(scope="session")
def dataset() -> Path:
    """The course's real agency files (../shared/dataset), or a clear skip from a plain clone."""
    if not (DATASET / "agency-1.csv").exists():
        pytest.skip(f"course dataset not found at {DATASET} (../shared is absent in a plain clone)")
    return DATASET
