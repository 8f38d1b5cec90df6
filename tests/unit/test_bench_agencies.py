"""``make bench``'s agencies section runs on this release (a benchmark nothing runs breaks unseen).
Timing stays out of tests: this checks that a round is driven whole and reported, not its speed."""

from __future__ import annotations

import pytest

from bench.agency_scale import PHASES, READ_REQUESTS, READS, run_one
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
    assert row["round_s"] > 0 and row["server_cpu_s"] >= 0


def test_the_postgresql_lookups_of_schema_4_are_measured() -> None:
    require_postgres()
    from bench.pg_lookups import measure

    row = measure(agencies=20, queries=3)
    assert row["agencies"] == 20
    assert all(value > 0 for key, value in row.items() if key.endswith("_us")), row
