"""``make bench``'s parts section runs on this release (a benchmark nothing runs breaks unseen).
Timing stays out of tests: this checks that every part runs and is reported, not its speed."""

from __future__ import annotations

import math

from bench.server_parts import measure


def test_every_part_runs_and_is_reported() -> None:
    figures = measure(calls=2, small_calls=30)
    assert sorted(figures) == sorted(
        [
            "validator (RE2 fullmatch)",
            "long-name check",
            "rows built (validator and check included)",
            "sha256 of a chunk",
            "lock turn: filelock.FileLock",
            "lock turn: the store's (filelock.lock_descriptor)",
            "append + fdatasync (a small write)",
            "store commit of a one-bet chunk (lock, 2 appends and fdatasyncs)",
            "thread hop: anyio (run_in_threadpool)",
            "thread hop: loop.run_in_executor",
        ]
    )
    assert all(math.isfinite(us) and us >= 0 for us in figures.values()), figures
