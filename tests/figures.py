"""The reliability figures the fault and fuzz tests produce (README "Reliability").

A test calls :func:`record` with what it measured; each call appends one JSON line to
``$LOTTERY_FIGURES_FILE`` (default ``.pytest_cache/lottery-figures.jsonl``), and the
``pytest_terminal_summary`` hook in tests/conftest.py prints the lines of this session as a
"Reliability figures" table at the end of the run.

The numbers, all counts:

``faults``      faults injected and survived (SIGKILLs, torn writes, full or read-only disk)
``fuzzed``      inputs fuzzed (generated requests or parser inputs)
``errors_5xx``  5xx answers seen (must be 0; a 503 a test provokes on purpose is not counted)
``lost``        bets sent and acknowledged but missing from bets.csv
``duplicated``  rows in bets.csv beyond what was sent (stored twice, or never sent)
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = (
    ("faults", "faults injected"),
    ("fuzzed", "inputs fuzzed"),
    ("errors_5xx", "5xx seen"),
    ("lost", "bets lost"),
    ("duplicated", "bets duplicated"),
)
_start_offset = 0


def path() -> Path:
    return Path(os.environ.get("LOTTERY_FIGURES_FILE") or ROOT / ".pytest_cache" / "lottery-figures.jsonl")


def record(name: str, **numbers: int) -> None:
    """Append one test's figures; unknown keys are kept in the file but not shown in the table."""
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"test": name, "time": round(time.time(), 3), **{k: int(v) for k, v in numbers.items()}})
    with open(target, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def lost_and_duplicated(expected: Counter, stored: Counter) -> tuple[int, int]:
    """Bets of ``expected`` missing from ``stored``, and rows of ``stored`` beyond ``expected``."""
    return sum((expected - stored).values()), sum((stored - expected).values())


def begin_session() -> None:
    """Remember where this session's lines start (the file may hold earlier runs)."""
    global _start_offset
    try:
        _start_offset = path().stat().st_size
    except FileNotFoundError:
        _start_offset = 0


def session_records() -> list[dict]:
    try:
        with open(path(), "rb") as f:
            f.seek(_start_offset)
            data = f.read()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def table(records: list[dict]) -> list[str]:
    """The records as a fixed-width table with a totals row."""
    headers = ["test", *(title for _, title in COLUMNS)]
    rows = [[r["test"], *(str(r[key]) if key in r else "-" for key, _ in COLUMNS)] for r in records]
    totals = ["total", *(str(sum(r.get(key, 0) for r in records)) for key, _ in COLUMNS)]
    widths = [max(len(str(row[i])) for row in [headers, *rows, totals]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))

    rule = "  ".join("-" * w for w in widths)
    return [fmt(headers), rule, *(fmt(row) for row in rows), rule, fmt(totals)]
