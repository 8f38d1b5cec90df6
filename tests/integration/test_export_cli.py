"""``python -m app.export`` as the README's "Read the history" runs it: from the folder the
server ran in, with neither LOTTERY_DATA_DIR nor LOTTERY_DATABASE_URL set (issue 25.3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.domain import load_bets
from app.store.files import FileStore
from devtools.server import ROOT
from tests.helpers import chunk


def export(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}  # no LOTTERY_* variable at all
    return subprocess.run(
        [sys.executable, "-m", "app.export", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_export_reads_the_servers_default_data_dir(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "data", 2, None)  # where the server keeps its files by default: ./data
    store.append_chunk(chunk(1, 4))
    store.append_chunk(chunk(2, 3))
    store.close()
    proc = export(tmp_path, "--round", "1", "--out", "round-1.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "lottery export: 7 bets of round 1 -> round-1.csv\n"
    assert len(list(load_bets(tmp_path / "round-1.csv"))) == 7


def test_export_without_a_data_dir_says_so_in_one_line(tmp_path: Path) -> None:
    proc = export(tmp_path, "--out", "bets.csv")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "lottery export: data holds no round (no server has run on it yet; "
        "set LOTTERY_DATA_DIR or --data-dir, or LOTTERY_DATABASE_URL for PostgreSQL)"
    ]
    assert not (tmp_path / "bets.csv").exists()
