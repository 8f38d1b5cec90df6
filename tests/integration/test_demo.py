"""``make demo``'s relay of the uploaders' log lines (issue 25.6): every line each uploader
writes reaches the screen. A relay thread and ``communicate()`` both read stderr, so lines
went to whichever read first: an agency seemed to finish without uploading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from client.generate import generate
from devtools.demo import run_uploaders
from devtools.server import Server

AGENCIES = 5
# What every uploader logs, in order (a wait for the draw only where the others were not done yet).
STEPS = [
    "ronda/success",
    "carga/in_progress",
    "carga/success",
    "fin_carga/success",
    "consulta_ganadores/success",
]


def test_every_uploader_line_is_relayed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    files = generate(tmp_path / "agencies", AGENCIES, 2000, seed=1)
    with Server(tmp_path / "data", workers=2, agencies=AGENCIES) as server:
        results = run_uploaders(server, files)
    assert [code for _, code in results] == [0] * AGENCIES
    shown = capfd.readouterr().out.splitlines()
    for agency in range(1, AGENCIES + 1):
        steps = [
            f"{m[1]}/{m[2]}"
            for line in shown
            if line.startswith(f"  agency {agency} | ")
            for m in [re.search(r"action: (\w+) \| result: (\w+)", line)]
        ]
        assert [s for s in steps if not s.startswith("espera_sorteo/")] == STEPS, (agency, shown)
