"""``make bench``'s agencies section runs on this release (a benchmark nothing runs breaks unseen).
Timing stays out of tests: this checks that a round is driven whole and reported, not its speed."""

from __future__ import annotations

import pytest

from bench.agency_scale import PHASES, READ_REQUESTS, READS, WATCHED, rate_against_baseline, run_one
from tests.postgres_db import require_postgres


@pytest.mark.parametrize("backend", ["files", "pg"])
def test_a_round_of_many_agencies_is_driven_and_reported(backend: str) -> None:
    if backend == "pg":
        require_postgres()  # the bench's address is the tests' (bench.pg_round.DEFAULT_URL)
    row = run_one(backend, agencies=30, bets=5, workers=2, connections=8)
    assert (row["backend"], row["agencies"], row["bets_per_agency"]) == (backend, 30, 5)
    for phase in PHASES:  # every request answered 2xx (run_one raises otherwise), and measured
        assert row[phase]["requests"] == 30
        assert 0 < row[phase]["p50_ms"] <= row[phase]["p99_ms"] <= row[phase]["max_ms"]
        assert 0 <= row[phase]["client_busy"]
    for phase in READS:
        assert row[phase]["requests"] == READ_REQUESTS
    for name in WATCHED:  # /status and the operator's state, asked throughout the round: answered 200
        assert row["during"][name]["requests"] >= 1
        assert 0 < row["during"][name]["p99_ms"] <= row["during"][name]["max_ms"]
    assert row["round_s"] > 0 and row["server_cpu_s"] >= 0


def test_the_postgresql_lookups_of_schema_4_are_measured() -> None:
    require_postgres()
    from bench.pg_lookups import measure

    row = measure(agencies=20, queries=3)
    assert row["agencies"] == 20
    assert all(value > 0 for key, value in row.items() if key.endswith("_us")), row


def test_done_and_winners_are_rated_against_500_agencies_of_the_same_backend() -> None:
    def row(backend: str, agencies: int, done: int, winners: int) -> dict:
        return {"backend": backend, "agencies": agencies, "done": {"per_s": done}, "winners": {"per_s": winners}}

    rows = [row("files", 500, 2000, 3000), row("files", 10_000, 1800, 3300), row("pg", 10, 50, 60)]
    rows.append(row("pg", 10_000, 900, 900))  # no 500-agency row of its backend: not rated
    rate_against_baseline(rows)
    assert [r.get("vs_500") for r in rows] == [None, {"done": 0.9, "winners": 1.1}, None, None]
