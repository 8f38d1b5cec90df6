"""``make bench``'s draw section runs on this release's store layout (it broke when rounds moved
the files into ``rounds/0001/`` and nothing ran it)."""

from __future__ import annotations

from pathlib import Path

from app.domain import WINNING_NUMBER
from bench.draw import make_round, measure


def test_the_draw_benchmark_draws_the_round_it_made(tmp_path: Path) -> None:
    size = make_round(tmp_path / "data", 100_000)
    expected = sum(
        line.rsplit(b",", 1)[1] == b"%d\n" % WINNING_NUMBER for line in (tmp_path / "data" / "bets.csv").open("rb")
    )
    result = measure(tmp_path / "data")
    assert (result["drawn"], result["winners"]) == (True, expected)
    assert result["file_mb"] == size / 2**20
