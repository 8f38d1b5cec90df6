# ruff: noqa: F811 - the imported fixtures (backend, lottery_log) are parameters here
"""Rounds over time (issue 11), run against both backends: the same round scenarios, the same answers.

Two store instances on one storage stand for two workers (files) or two hosts (PostgreSQL).
"""

from __future__ import annotations

import itertools
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.store import (
    AgencyClosed,
    Chunk,
    DoneReceipt,
    RoundNotCurrent,
    RoundNotFound,
    RoundStatus,
    RoundStillOpen,
    UploadSummary,
)
from app.store.base import DONE_BATCH
from tests.contract.test_store_contract import Backend, backend, draw_lines, lottery_log, pg_url  # noqa: F401
from tests.helpers import WIN, chunk, make_rows

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


def finish(store, agencies: int, round_id: int | None = None) -> None:
    for agency in range(1, agencies + 1):
        store.mark_done(agency, round=round_id)


def test_a_fresh_store_is_round_1_open_with_the_settings(backend: Backend) -> None:
    s = backend.make(agencies=3, winning_number=WIN)
    assert s.current_round() == 1
    info = s.round_info()
    assert (info.round, info.state, info.agencies, info.winning_number, info.random) == (1, "open", 3, WIN, False)
    assert (info.done_count, info.bets, info.winners, info.drawn_at) == (0, 0, None, None)
    assert ISO.match(info.opened_at)
    assert s.rounds() == [info] and s.round_info(1) == info


def test_the_next_round_opens_only_after_the_draw_and_keeps_the_last_one(backend: Backend, lottery_log) -> None:
    first, second = backend.make(agencies=2), backend.make(agencies=2)
    first.append_chunk(chunk(1, 5, winners={1, 3}, key="k"))
    first.append_chunk(chunk(2, 4, upload=("file", 0)))
    with pytest.raises(RoundStillOpen, match="round 1 is still open") as refused:
        second.open_round()
    assert refused.value.current == 1
    first.mark_done(1)
    with pytest.raises(RoundStillOpen):
        first.open_round()
    assert second.mark_done(2).drawn

    opened = second.open_round(agencies=3, winning_number=42)
    assert (opened.round, opened.state, opened.agencies, opened.winning_number, opened.bets) == (2, "open", 3, 42, 0)
    assert first.current_round() == 2 and first.agencies == 3  # the other worker sees it at once
    with pytest.raises(RoundStillOpen, match="round 2 is still open"):
        first.open_round()

    # round 1 is kept whole: its winners, uploads and status read the same from either instance
    for s in (first, second):
        assert s.winners(1, round=1) == ["1000001", "1000003"]
        assert s.winners(1) is None  # the current round (2) is not drawn
        assert s.status(round=1) == RoundStatus(2, 2, True, 9, 1)
        assert s.status() == RoundStatus(3, 0, False, 0, 2)
        assert s.uploads(2, round=1) == [UploadSummary("file", 4, 1)]
        assert s.uploads(2) == []
    old = first.round_info(1)
    assert (old.state, old.bets, old.winners, old.done_count) == ("drawn", 9, 2, 2)
    assert ISO.match(old.drawn_at)
    assert [r.round for r in first.rounds()] == [2, 1]
    assert [r.round for r in first.rounds(limit=1)] == [2]
    assert [r.round for r in first.rounds(before=2)] == [1]
    assert lottery_log.text.count("action: ronda_abierta | result: success | ronda: 2 | agencias: 3") == 1


def test_bets_for_another_round_are_refused_naming_the_current_one(backend: Backend) -> None:
    s = backend.make(agencies=1)
    stored = chunk(1, 3, key="k1", upload=("u", 0))
    s.append_chunk(stored, round=1)
    finish(s, 1)
    s.open_round()
    # a retry of what round 1 stored is still answered; anything new for round 1 is refused
    assert s.append_chunk(stored, round=1).replayed
    for target in (1, 3):
        with pytest.raises(RoundNotCurrent, match="the current round is 2; bets go to round 2") as refused:
            s.append_chunk(chunk(1, 2, "new"), round=target)
        assert refused.value.current == 2
    with pytest.raises(RoundNotCurrent, match="round 3 does not exist yet"):
        s.mark_done(1, round=3)
    with pytest.raises(RoundNotFound):
        s.winners(1, round=3)
    with pytest.raises(RoundNotFound):
        s.round_info(7)
    # keys and upload ids are per round: the same ones store again in round 2
    assert s.append_chunk(stored, round=2).replayed is False
    assert s.append_chunk(stored).replayed is True
    assert s.status() == RoundStatus(1, 0, False, 3, 2)


def test_agencies_outside_the_round_are_refused_per_round(backend: Backend) -> None:
    s = backend.make(agencies=1)
    finish(s, 1)
    s.open_round(agencies=2)
    assert s.append_chunk(chunk(2, 2)).stored == 2
    assert s.round_agencies(1) == 1 and s.round_agencies() == 2
    finish(s, 2)
    s.open_round(agencies=1)
    with pytest.raises(AgencyClosed, match="agency 2 is not part of this round"):
        s.append_chunk(chunk(2, 2))


def test_a_restart_with_other_settings_keeps_the_round_and_the_next_takes_them(backend: Backend) -> None:
    s = backend.make(agencies=2, winning_number=WIN)
    s.append_chunk(chunk(1, 3, winners={0}))
    s.mark_done(1)
    restarted = backend.make(agencies=4, winning_number=17)
    assert (restarted.agencies, restarted.winning_number) == (2, WIN)
    assert restarted.mark_done(2) == DoneReceipt(2, 2, 2, True)
    opened = restarted.open_round()
    assert (opened.agencies, opened.winning_number) == (4, 17)  # the settings: defaults of the next round
    assert (s.agencies, s.winning_number) == (4, 17)


def test_two_openings_at_once_open_one_round(backend: Backend) -> None:
    stores = [backend.make(agencies=1) for _ in range(4)]
    finish(stores[0], 1)
    barrier = threading.Barrier(len(stores))
    outcomes: list[object] = []

    def open_one(s) -> None:
        barrier.wait()
        try:
            outcomes.append(s.open_round().round)
        except RoundStillOpen as error:
            outcomes.append(error.current)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == [2, 2, 2, 2]
    assert [r.round for r in stores[0].rounds()] == [2, 1]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(numbers=st.lists(st.integers(0, 9), min_size=1, max_size=30))
def test_a_random_round_draws_its_number_at_the_draw(backend: Backend, numbers: list[int]) -> None:
    """Bets on numbers 0..9 only: whatever number is drawn, the winners are exactly the bets on it."""
    s = backend.make(agencies=1)  # the same storage for every example: each one opens a round more
    if s.round_info().state == "open":
        finish(s, 1)
    opened = s.open_round(winning_number="random")
    assert (opened.winning_number, opened.random) == (None, True)
    rows = [(1, f"n{i}", "x", f"{i:08d}", "2000-01-01", n) for i, n in enumerate(numbers)]
    s.append_chunk(Chunk.from_rows(1, rows))
    finish(s, 1)
    drawn = s.round_info()
    assert drawn.random and 0 <= drawn.winning_number <= 9999
    expected = [row[3] for row in rows if row[5] == drawn.winning_number]
    assert s.winners(1) == expected and drawn.winners == len(expected)


def test_a_random_draw_is_logged_with_its_number(backend: Backend, lottery_log) -> None:
    s = backend.make(agencies=1)
    finish(s, 1)
    s.open_round(winning_number="random")
    s.append_chunk(chunk(1, 2))
    finish(s, 1)
    number = s.round_info().winning_number
    assert draw_lines(lottery_log)[-1] == (
        f"action: sorteo | result: success | apuestas: 2 | cant_ganadores: {len(s.winners(1))} | ronda: 2 | "
        f"numero_ganador: {number} | aleatorio: si"
    )


def test_every_round_done_but_not_drawn_is_drawn_by_the_next_read(backend: Backend) -> None:
    s = backend.make(agencies=2)
    finish(s, 2)
    s.open_round(agencies=1)
    s.append_chunk(chunk(1, 4, winners={2}))
    backend.record_done([1])  # a crash between the last done and the draw, in round 2
    assert backend.make(agencies=1).status(draw=False).drawn is False
    assert backend.make(agencies=1).winners(1) == ["1000002"]
    assert s.round_info().state == "drawn"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agencies=st.integers(1, 12), data=st.data())
def test_done_and_pending_agencies_read_any_page_from_any_id(backend: Backend, agencies: int, data) -> None:
    """Issue 21: the round's done (and pending) agencies a page at a time, from any id on, as
    another worker or host (``reader``) sees them too; each example is a round of its own."""
    s, reader = backend.stores[:2] or (backend.make(agencies=agencies), backend.make(agencies=agencies))
    left = s.round_info()
    if left.round > 1 or left.agencies != agencies:  # a round of its own: the earlier one drawn, if need be
        finish(s, left.agencies)
        s.open_round(agencies=agencies)
    round_id = s.current_round()
    done = sorted(data.draw(st.sets(st.integers(1, agencies), max_size=agencies - 1), label="done"))
    for agency in done:
        s.mark_done(agency)
    pending = [a for a in range(1, agencies + 1) if a not in done]
    for after, limit, batch in itertools.product(range(agencies + 2), range(1, agencies + 3), (1, 3, DONE_BATCH)):
        expected = ([a for a in done if a > after][:limit], [a for a in pending if a > after][:limit])
        for store in (s, reader):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("app.store.base.DONE_BATCH", batch)  # pending walks the done ones a batch at a time
                found = (store.done_agencies(after, limit, round_id), store.pending_agencies(after, limit, round_id))
            assert found == expected, (after, limit, batch)
    assert s.round_info(round_id).done_count == len(done)
    with pytest.raises(RoundNotFound):
        reader.done_agencies(0, 10, round_id + 1)
    with pytest.raises(RoundNotFound):
        reader.pending_agencies(0, 10, round_id + 1)
    finish(s, agencies, round_id)
    assert reader.done_agencies(0, 100, round_id) == list(range(1, agencies + 1))
    assert reader.pending_agencies(0, 100, round_id) == []


def test_stored_rows_of_each_round_stay_apart(backend: Backend) -> None:
    s = backend.make(agencies=1)
    s.append_chunk(chunk(1, 3, "a"))
    finish(s, 1)
    s.open_round()
    s.append_chunk(chunk(1, 2, "b", start=10))
    assert backend.rows() == make_rows(1, 2, "b", start=10)  # the current round's bets.csv


# -- a database of the one-round release (schema version 2) becomes round 1 --------------------------


@pytest.fixture
def pg(pg_url):
    from tests.contract.test_store_contract import PostgresBackend
    from tests.postgres_db import reset_database

    reset_database(pg_url)
    made = PostgresBackend(pg_url)
    yield made
    made.close()


def make_v2_database(url: str, drawn: bool) -> None:
    """What the one-round release (schema version 2) leaves: a chunk with a key, one with an upload
    range, agency 1 done (and 2, and the draw, when ``drawn``)."""
    import orjson
    import psycopg

    from app.store.postgres import SCHEMA, SCHEMA_V2

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SCHEMA + SCHEMA_V2:
            conn.execute(statement)
        conn.execute("INSERT INTO lottery_schema (id, version) VALUES (1, 2)")
        conn.execute("UPDATE lottery_round SET agencies = 2, winning_number = %s, opened_at = now()", (WIN,))
        for c in (chunk(1, 3, key="k1", winners={1}), chunk(2, 2, upload=("old", 0))):
            upload = (c.upload.upload_id, 0, c.count) if c.upload else (None, None, None)
            conn.execute(
                "INSERT INTO lottery_chunks (agency, idempotency_key, fingerprint, count, upload_id, upload_start, "
                "upload_end) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (c.agency, c.idempotency_key, c.fingerprint, c.count, *upload),
            )
            with conn.cursor().copy(
                "COPY lottery_bets (agency, first_name, last_name, document, birthdate, number) FROM STDIN (FORMAT csv)"
            ) as copy:
                copy.write(c.payload)
        conn.execute("INSERT INTO lottery_done (agency) VALUES (1)")
        if drawn:
            conn.execute("INSERT INTO lottery_done (agency) VALUES (2)")
            winners = orjson.dumps({"1": ["1000001"], "2": []}).decode()
            conn.execute(
                "UPDATE lottery_round SET drawn = true, bets = 5, winners = %s::jsonb, drawn_at = now()", (winners,)
            )


@pytest.mark.parametrize("drawn", [False, True])
def test_a_version_2_database_becomes_round_1_once_however_many_workers_start(pg, drawn: bool) -> None:
    import psycopg

    from app.store.postgres import SCHEMA_VERSION

    make_v2_database(pg.url, drawn)
    with psycopg.connect(pg.url) as conn:  # the bets as version 2 holds them, in stored order
        before = (
            conn.execute(
                "SELECT string_agg(concat_ws(',', agency, first_name, last_name, document, birthdate, number) "
                "|| E'\\n', '' ORDER BY chunk_id, id) FROM lottery_bets"
            )
            .fetchone()[0]
            .encode()
        )
    barrier = threading.Barrier(4)
    made: list = []

    def start() -> None:
        barrier.wait()
        made.append(pg.make(agencies=5, winning_number=1))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT version FROM lottery_schema").fetchall() == [(SCHEMA_VERSION,)]
    s = made[0]
    assert len(made) == 4 and s.current_round() == 1 and pg.bets_csv() == before
    assert (s.agencies, s.winning_number) == (2, WIN)
    assert s.status(draw=False) == RoundStatus(2, 2 if drawn else 1, drawn, 5, 1)
    assert s.append_chunk(chunk(1, 3, key="k1", winners={1})).replayed
    if not drawn:
        assert s.append_chunk(chunk(2, 2, upload=("old", 0))).replayed
        assert s.mark_done(2).drawn
    assert s.winners(1, round=1) == ["1000001"]
    opened = s.open_round()
    assert (opened.round, opened.agencies, opened.winning_number) == (2, 5, 1)
    assert s.append_chunk(chunk(1, 3, key="k1", winners={1})).replayed is False  # keys are per round


# -- a database of schema version 3 (rounds; done and winners counted per request) becomes version 4 --


def make_v3_database(url: str) -> None:
    """What the rounds release (schema version 3) leaves: round 1 drawn, its winners one jsonb
    value; round 2 open with agencies 1 and 2 done."""
    import orjson
    import psycopg

    from app.store.postgres import SCHEMA, SCHEMA_V2, SCHEMA_V3

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SCHEMA + SCHEMA_V2 + SCHEMA_V3:
            conn.execute(statement)
        conn.execute("INSERT INTO lottery_schema (id, version) VALUES (1, 3)")
        winners = orjson.dumps({"1": ["1000009", "1000001"], "2": [], "3": ["3000000"]}).decode()
        conn.execute(
            "UPDATE lottery_round SET agencies = 3, winning_number = %s, opened_at = now(), drawn = true, "
            "bets = 12, winners = %s::jsonb, drawn_at = now() WHERE id = 1",
            (WIN, winners),
        )
        conn.execute("INSERT INTO lottery_done (round, agency) VALUES (1, 1), (1, 2), (1, 3)")
        conn.execute(
            "INSERT INTO lottery_round (id, agencies, winning_number, opened_at) VALUES (2, 3, %s, now())", (WIN,)
        )
        conn.execute("INSERT INTO lottery_done (round, agency) VALUES (2, 2), (2, 1)")


def test_a_version_3_database_keeps_its_done_agencies_and_winners_as_version_4(pg) -> None:
    import psycopg

    from app.store.postgres import SCHEMA_VERSION

    make_v3_database(pg.url)
    barrier = threading.Barrier(3)
    made: list = []

    def start() -> None:
        barrier.wait()
        made.append(pg.make(agencies=5))

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with psycopg.connect(pg.url) as conn:
        assert (
            conn.execute("SELECT version FROM lottery_schema").fetchall() == [(SCHEMA_VERSION,)] and SCHEMA_VERSION >= 4
        )
        assert conn.execute(
            "SELECT id, done_count, winners_count, winners FROM lottery_round ORDER BY id"
        ).fetchall() == [
            (1, 3, 3, None),
            (2, 2, None, None),
        ]
    s = made[0]
    assert len(made) == 3 and s.current_round() == 2
    assert [s.winners(a, round=1) for a in (1, 2, 3)] == [["1000009", "1000001"], [], ["3000000"]]  # stored order
    info = s.round_info(1)
    assert (info.state, info.winners, info.bets, info.done_count) == ("drawn", 3, 12, 3)
    assert s.done_agencies(0, 10, round=1) == [1, 2, 3]
    assert s.status(draw=False) == RoundStatus(3, 2, False, 0, 2)
    assert s.mark_done(2).done == 2  # already done before the migration
    assert s.mark_done(3) == DoneReceipt(3, 3, 3, True)
    assert s.round_info(2).winners == 0 and s.winners(1) == []


def test_dones_queued_in_one_process_commit_in_one_transaction(pg) -> None:
    """Group commit of dones on PostgreSQL: those waiting for this process's turn go through the
    flow one by one in one transaction (one commit); each gets its own receipt; one draw."""
    import psycopg

    s = pg.make(agencies=40)
    receipts: dict[int, DoneReceipt] = {}
    with s._done_lock:  # this process's turn is taken: every done queues
        threads = [threading.Thread(target=lambda a=a: receipts.update({a: s.mark_done(a)})) for a in range(1, 41)]
        for t in threads:
            t.start()
        while len(s._done_queues.get(None, [])) < 40:  # an observed event: every done waits in the queue
            threading.Event().wait(0.001)
    for t in threads:
        t.join(30)
    assert sorted(r.done for r in receipts.values()) == list(range(1, 41))
    assert [a for a, r in receipts.items() if r.drawn] == [max(receipts, key=lambda a: receipts[a].done)]
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT count(DISTINCT xmin::text), count(*) FROM lottery_done").fetchone() == (1, 40)
        assert conn.execute("SELECT done_count, drawn FROM lottery_round").fetchone() == (40, True)
    assert s.status() == RoundStatus(40, 40, True, 0)


def test_the_done_count_and_pages_follow_every_change_of_the_done_rows(pg) -> None:
    """/status and /rounds/{n} answer the round's kept done_count, and the pages its done rows:
    a repair by hand (a row deleted, another inserted: the same count) is seen at once, as are
    dones from another host."""
    import psycopg

    s, other = pg.make(agencies=3), pg.make(agencies=3)
    s.mark_done(1)
    assert s.status().done_count == 1 and s.round_info().done_count == 1
    other.mark_done(3)
    assert s.status().done_count == 2 and s.round_info(1).done_count == 2 and s.done_agencies(0, 9) == [1, 3]
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("DELETE FROM lottery_done WHERE agency = 1")
        conn.execute("INSERT INTO lottery_done (round, agency) VALUES (1, 2)")
    assert s.status().done_count == 2 and s.done_agencies(0, 9) == [2, 3] and s.pending_agencies(0, 9) == [1]
    assert s.round_info().done_count == s.rounds()[0].done_count == 2
    assert s.mark_done(1) == DoneReceipt(1, 3, 3, True)
