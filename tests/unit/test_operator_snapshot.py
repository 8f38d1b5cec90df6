"""The operator's page with a country's agencies (issue 21): its snapshot, pushed to every open
page on every change, holds a bounded table (every agency of a small round; the ones not done
yet, lowest ids first, of a large one) and the slowest agencies, never a row per agency."""

from __future__ import annotations

import orjson

from app.routes.operator import SLOWEST, TABLE_ROWS, snapshot
from app.store.base import RoundInfo
from app.store.stats import AgencyStats, RoundStats

NOW = 1_800_000_000.0


def info(agencies: int, done: int) -> RoundInfo:
    return RoundInfo(1, agencies, 7574, False, done, 0, None, None, None)


def test_a_small_round_shows_every_agency() -> None:
    stats = RoundStats(3, [2], {1: AgencyStats(1, 5, 1, NOW), 2: AgencyStats(2, 1, 1, NOW - 60)})
    shown = snapshot(stats, info(3, 1))
    assert [(a["agency"], a["done"]) for a in shown["agencies"]] == [(1, False), (2, True), (3, False)]
    assert (shown["table"], shown["pending"]) == ("all", 2)
    # not done, the longest quiet first: agency 3 never sent anything
    assert [a["agency"] for a in shown["slowest"]] == [3, 1]


def test_a_countrys_round_shows_the_agencies_not_done_yet_and_the_slowest() -> None:
    agencies = 10_000
    pending = {17, 4_000, 9_999, *range(9_000, 9_200)}
    done = [a for a in range(1, agencies + 1) if a not in pending]
    seen = {a: AgencyStats(a, 60, 1, NOW - (a % 97)) for a in range(1, agencies + 1) if a != 9_999}
    stats = RoundStats(agencies, done, seen)
    shown = snapshot(stats, info(agencies, len(done)))
    assert shown["table"] == "pending" and shown["pending"] == len(pending) and shown["done"] == len(done)
    assert [a["agency"] for a in shown["agencies"]] == sorted(pending)[:TABLE_ROWS]
    assert not any(a["done"] for a in shown["agencies"])
    slowest = [a["agency"] for a in shown["slowest"]]
    quietest = sorted(pending - {9_999}, key=lambda a: (-(a % 97), a))
    assert slowest == [9_999, *quietest][:SLOWEST]  # never seen first, then the longest since a chunk
    assert len(orjson.dumps(shown)) < 20_000  # bounded, whatever the agencies (a row per agency: about 1 MB)
