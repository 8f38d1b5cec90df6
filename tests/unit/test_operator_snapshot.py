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


def test_a_refresh_that_costs_more_waits_longer_so_an_open_page_costs_a_bounded_share_of_a_core(tmp_path) -> None:
    """Reading every agency's counts costs more the more agencies: the next refresh waits
    REFRESH_COST_RATIO times the last one's cost (never less than REFRESH_SECONDS). A clock of
    the test's, moved by the store's read, stands for the time."""
    import asyncio
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.routes.operator import REFRESH_COST_RATIO, REFRESH_SECONDS, Snapshots
    from app.settings import Settings
    from app.store.files import FileStore

    now = [1000.0]
    store = FileStore(tmp_path / "data", 3, 7574)
    app = create_app(Settings(data_dir=tmp_path / "data", agencies=3), store)
    TestClient(app)  # the app's state made (no lifespan: no sampler)
    read = store.agency_stats
    cost = [0.01]
    reads: list[float] = []

    def slow_read(**kwargs):
        reads.append(now[0])
        now[0] += cost[0]  # the read takes this long on the test's clock
        return read(**kwargs)

    store.agency_stats = slow_read
    hub = Snapshots(clock=lambda: now[0])
    request = SimpleNamespace(app=app)

    def ask_at(when: float) -> None:
        now[0] = when
        asyncio.run(hub.latest(request))

    ask_at(1000.0)
    ask_at(1000.01 + REFRESH_SECONDS - 0.001)  # a cheap read: refreshed every REFRESH_SECONDS
    assert len(reads) == 1
    cost[0] = 1.0  # a country's round: reading every agency takes a second
    ask_at(1000.01 + REFRESH_SECONDS)
    assert len(reads) == 2
    after = now[0]
    ask_at(after + REFRESH_COST_RATIO * 1.0 - 0.001)
    assert len(reads) == 2  # still the last snapshot: a read a second costs 1/REFRESH_COST_RATIO of a core
    ask_at(after + REFRESH_COST_RATIO * 1.0)
    assert len(reads) == 3
