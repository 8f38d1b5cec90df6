"""The reliability figures the fault and fuzz tests measure (README "Reliability").

A test calls :func:`record` with what it observed (rows read back from storage, statuses
counted), *before* asserting anything about it; calls with the same name merge. When the
test ends, the hooks in tests/conftest.py join the test's outcome (passed, failed, error,
skipped) and append one JSON line to ``$LOTTERY_FIGURES_FILE`` (default
``.pytest_cache/lottery-figures.jsonl``); at the end of the run they print this session's
lines as the "Reliability figures" table, outcome included. A number a test did not
measure is absent from its line and printed as "-", never as 0.

The numbers, all counts:

``faults``      faults injected (SIGKILLs, a full or read-only disk, a lost ledger). A state
                written by hand (a torn tail, a done-set without winners) is a crafted
                state, not an injected fault: tests report it as ``crafted_states``.
``fuzzed``      inputs fuzzed (generated requests or parser inputs)
``errors_5xx``  5xx answers seen (a 503 a test provokes on purpose is not counted)
``lost``        bets sent and acknowledged but missing from storage
``duplicated``  rows in storage beyond what was sent (stored twice, or never sent)
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
# (test node id, figure name) -> numbers measured so far, until the test's outcome is known.
_pending: dict[tuple[str, str], dict[str, int]] = {}


def path() -> Path:
    return Path(os.environ.get("LOTTERY_FIGURES_FILE") or ROOT / ".pytest_cache" / "lottery-figures.jsonl")


def current_test() -> str:
    """The node id of the test pytest is running now ("" outside a test)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rsplit(" (", 1)[0]  # drop the " (call)" / " (setup)" suffix


def record(name: str, **numbers: int) -> None:
    """Keep what the current test measured; written with its outcome once the test ends.

    Keys other than :data:`COLUMNS` are kept in the file but not shown in the table.
    """
    _pending.setdefault((current_test(), name), {}).update({k: int(v) for k, v in numbers.items()})


def finish_test(nodeid: str, outcome: str) -> None:
    """Append the figures ``nodeid`` recorded, with its outcome (called by a conftest hook)."""
    for key in [key for key in _pending if key[0] == nodeid]:
        _write({"test": key[1], "nodeid": nodeid, "outcome": outcome, **_pending.pop(key)})


def finish_session() -> None:
    """Figures recorded outside any test (none is expected) are written with no outcome."""
    for (nodeid, name), numbers in list(_pending.items()):
        _write({"test": name, "nodeid": nodeid, "outcome": "unknown", **numbers})
    _pending.clear()


def _write(line: dict) -> None:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps({**line, "time": round(time.time(), 3)}) + "\n")


def lost_and_duplicated(expected: Counter, stored: Counter) -> tuple[int, int]:
    """Bets of ``expected`` missing from ``stored``, and rows of ``stored`` beyond ``expected``."""
    return sum((expected - stored).values()), sum((stored - expected).values())


def begin_session() -> None:
    """Remember where this session's lines start (the file may hold earlier runs)."""
    global _start_offset
    _pending.clear()
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
    """The records as a fixed-width table: each test's outcome, its figures, a totals row.

    A figure a test did not measure shows "-"; a total is the sum of the measured ones
    ("-" when no test measured it). The totals row counts the outcomes.
    """
    headers = ["test", "outcome", *(title for _, title in COLUMNS)]
    rows = [
        [r["test"], r.get("outcome", "unknown"), *(str(r[key]) if key in r else "-" for key, _ in COLUMNS)]
        for r in records
    ]
    outcomes = Counter(r.get("outcome", "unknown") for r in records)
    totals = [
        "total",
        ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())),
        *(
            str(sum(r[key] for r in records if key in r)) if any(key in r for r in records) else "-"
            for key, _ in COLUMNS
        ),
    ]
    widths = [max(len(str(row[i])) for row in [headers, *rows, totals]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row))

    rule = "  ".join("-" * w for w in widths)
    return [fmt(headers), rule, *(fmt(row) for row in rows), rule, fmt(totals)]


def main() -> None:
    """``python -m tests.figures``: the table of every line in the figures file (one CI run's
    ``make test`` and ``make test-long`` together, when both wrote to one ``$LOTTERY_FIGURES_FILE``)."""
    try:
        lines = path().read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    records = [json.loads(line) for line in lines if line.strip()]
    print("\n".join(table(records)) if records else f"no figures in {path()}")


if __name__ == "__main__":
    main()
