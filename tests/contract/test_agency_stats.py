"""``Store.agency_stats``, what the operator's page and /metrics read, on both backends.

Generated rounds (hypothesis): chunks of random sizes from random agencies, some sent twice
with the same Idempotency-Key, some agencies done, maybe the draw. The stats must match a
model of what was stored (replays count once), as seen from a second store instance (another
worker, or another host), and after the draw give each agency's winners *count*.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.store import Store
from app.store.files import FileStore
from tests.helpers import WIN, chunk
from tests.postgres_db import fresh_database, reset_database

AGENCIES = 3

uploads = st.lists(
    st.tuples(
        st.integers(1, AGENCIES),  # agency
        st.integers(1, 40),  # bets
        st.booleans(),  # sent twice with the same key
        st.sets(st.integers(0, 39), max_size=3),  # which of its bets win
    ),
    max_size=12,
)
done_sets = st.sets(st.integers(1, AGENCIES))


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("lottery_stats") as url:
        yield url


@pytest.fixture(params=["files", "postgres"])
def open_round(request) -> Iterator[Callable[[], tuple[Store, Store]]]:
    """Makes a fresh round and two store instances on it (two workers, or two hosts)."""
    made: list[Store] = []
    temporary = tempfile.TemporaryDirectory(prefix="stats-")

    def fresh() -> tuple[Store, Store]:
        for store in made:
            store.close()
        made.clear()
        if request.param == "files":
            where = Path(tempfile.mkdtemp(dir=temporary.name))
            made.extend(FileStore(where, AGENCIES, WIN) for _ in range(2))
        else:
            url = request.getfixturevalue("pg_url")
            reset_database(url)
            from app.store.postgres import PostgresStore

            made.extend(PostgresStore(url, AGENCIES, WIN) for _ in range(2))
        return made[0], made[1]

    yield fresh
    for store in made:
        store.close()
    temporary.cleanup()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uploads=uploads, done=done_sets)
def test_stats_match_what_was_stored(open_round, uploads, done) -> None:
    writer, reader = open_round()
    expected_bets = dict.fromkeys(range(1, AGENCIES + 1), 0)
    expected_chunks = dict.fromkeys(range(1, AGENCIES + 1), 0)
    started = time.time()
    for serial, (agency, count, twice, winners) in enumerate(uploads):
        sent = chunk(agency, count, tag=f"c{serial}-", key=f"k{serial}", winners={w for w in winners if w < count})
        for _ in range(2 if twice else 1):
            writer.append_chunk(sent)
        expected_bets[agency] += count
        expected_chunks[agency] += 1
    for agency in sorted(done):
        writer.mark_done(agency)

    stats = reader.agency_stats()
    assert stats.expected == AGENCIES
    assert stats.done == sorted(done)
    assert {a: s.bets for a, s in stats.agencies.items()} == {a: n for a, n in expected_bets.items() if n}
    assert {a: s.chunks for a, s in stats.agencies.items()} == {a: n for a, n in expected_chunks.items() if n}
    assert stats.bets == sum(expected_bets.values())
    for seen in stats.agencies.values():
        assert seen.last_activity is not None and seen.last_activity >= started - 1  # not some stale time
    if len(done) < AGENCIES:
        assert stats.drawn_at is None and stats.winners is None
        return
    assert stats.drawn_at is not None and stats.drawn_at >= started - 1
    assert stats.winners == {a: len(writer.winners(a)) for a in range(1, AGENCIES + 1)}
