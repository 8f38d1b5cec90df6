"""Small helpers the test layers share (fixtures live in conftest.py)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from app.domain import WINNING_NUMBER, Row
from app.store import Chunk, UploadSpan

WIN = WINNING_NUMBER  # the course's default, from the domain


def read_agency_file(path: Path) -> list[tuple[str, str, str, str, int]]:
    """The bets of one agency file, as they should be stored (trimmed names, int number)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [(a.strip(), b.strip(), c, d, int(e)) for a, b, c, d, e in csv.reader(f) if a]


def round_file(data_dir: Path, name: str = "bets.csv", round_id: int | None = None) -> Path:
    """A file of one round (the current one by default) in a data dir: ``rounds/0003/bets.csv``.
    A data dir that no server took over yet keeps its one round at the top."""
    rounds = Path(data_dir) / "rounds"
    ids = sorted(int(p.name) for p in rounds.iterdir() if p.name.isdigit()) if rounds.is_dir() else []
    if not ids:
        return Path(data_dir) / name
    return rounds / f"{round_id or ids[-1]:04d}" / name


def csv_rows(path: Path) -> Counter:
    """A bets.csv as a multiset of (agency, first, last, document, birthdate, number)."""
    with open(path, newline="", encoding="utf-8") as f:
        return Counter((int(a), b, c, d, e, int(n)) for a, b, c, d, e, n in csv.reader(f))


def stored_rows(data_dir: Path, round_id: int | None = None) -> Counter:
    """A round's bets.csv (file backend) as a multiset of rows."""
    return csv_rows(round_file(data_dir, "bets.csv", round_id))


def exported_rows(database_url: str, out: Path, timeout: float = 120) -> Counter:
    """The current round's rows as ``python -m app.export`` writes them from PostgreSQL into ``out``."""
    from devtools.server import ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "app.export", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "LOTTERY_DATABASE_URL": database_url},
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return csv_rows(out)


def expected_rows(files: dict[int, Path]) -> Counter:
    """What bets.csv must hold after every agency file was uploaded once."""
    return Counter((a, *bet) for a, path in files.items() for bet in read_agency_file(path))


def make_rows(agency: int, n: int, tag: str = "x", start: int = 0, winners: set[int] = frozenset()) -> list[Row]:
    """``n`` valid rows for ``agency``; the indexes in ``winners`` get the winning number."""
    return [
        (agency, f"{tag}{i}", f"Last {tag}", f"{agency}{i:06d}", "2000-01-01", WIN if i in winners else i % 7000)
        for i in range(start, start + n)
    ]


def chunk(
    agency: int,
    n: int,
    tag: str = "x",
    *,
    key: str | None = None,
    upload: tuple[str, int] | None = None,
    start: int = 0,
    winners: set[int] = frozenset(),
) -> Chunk:
    """A store-ready chunk of :func:`make_rows`, with an optional key and upload span."""
    span = UploadSpan(*upload) if upload else None
    return Chunk.from_rows(agency, make_rows(agency, n, tag, start, winners), key, span)


def without_log(answer: dict) -> dict:
    """A bets answer without its transparency-log receipt (checked in test_transparency_log.py)."""
    return {name: value for name, value in answer.items() if name != "log"}
