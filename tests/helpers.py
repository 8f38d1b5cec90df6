"""Small helpers the test layers share (fixtures live in conftest.py)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path


def read_agency_file(path: Path) -> list[tuple[str, str, str, str, int]]:
    """The bets of one agency file, as they should be stored (trimmed names, int number)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [(a.strip(), b.strip(), c, d, int(e)) for a, b, c, d, e in csv.reader(f) if a]


def stored_rows(data_dir: Path) -> Counter:
    """bets.csv as a multiset of (agency, first, last, document, birthdate, number)."""
    with open(data_dir / "bets.csv", newline="", encoding="utf-8") as f:
        return Counter((int(a), b, c, d, e, int(n)) for a, b, c, d, e, n in csv.reader(f))


def expected_rows(files: dict[int, Path]) -> Counter:
    """What bets.csv must hold after every agency file was uploaded once."""
    return Counter((a, *bet) for a, path in files.items() for bet in read_agency_file(path))
