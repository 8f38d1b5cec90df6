"""The storage contract, run against every backend: files and PostgreSQL.

Each test gets a fresh round: a new data dir, or the lottery tables dropped in a database
made for this module. Two store instances on the same storage stand for two workers (files)
or two hosts (PostgreSQL). The PostgreSQL runs skip, saying why, when no server answers
(see tests/postgres_db.py and .ci/postgres.sh).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import random
import re
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from app.domain import Row, encode_rows, has_won, load_bets, row_to_bet
from app.store import (
    AgencyClosed,
    Chunk,
    ChunkReceipt,
    DoneReceipt,
    IdempotencyMismatch,
    RangeConflict,
    RoundStatus,
    StorageUnavailable,
    Store,
    StoredSpan,
    UploadState,
    UploadSummary,
)
from app.store.files import FileStore, round_dir, round_ids
from devtools.server import ROOT, free_port
from tests.helpers import WIN, chunk, make_rows
from tests.postgres_db import fresh_database, reset_database
from tlog import note

# -- the backends -------------------------------------------------------------------------------


class Backend:
    """Makes store instances on one storage, and reads what it holds from outside the store."""

    name: str

    def __init__(self) -> None:
        self.stores: list[Store] = []

    def make(self, agencies: int = 3, winning_number: int = WIN, lock_timeout: float = 10) -> Store:
        store = self._open(agencies, winning_number, lock_timeout)
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()

    def _open(self, agencies: int, winning_number: int, lock_timeout: float) -> Store:
        raise NotImplementedError

    def bets_csv(self) -> bytes:
        """The stored bets in the course's bets.csv format, in stored order."""
        raise NotImplementedError

    def rows(self) -> list[Row]:
        return [(int(a), f, l, d, b, int(n)) for a, f, l, d, b, n in csv.reader(io.StringIO(self.bets_csv().decode()))]

    def record_done(self, agencies: list[int]) -> None:
        """What a crash between the last done and the draw leaves behind."""
        raise NotImplementedError


class FilesBackend(Backend):
    name = "files"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _open(self, agencies, winning_number, lock_timeout):
        return FileStore(self.path, agencies, winning_number, lock_timeout=lock_timeout)

    def current(self) -> Path:
        """The current round's directory."""
        return round_dir(self.path, round_ids(self.path)[-1])

    def bets_csv(self) -> bytes:
        bets = self.current() / "bets.csv"
        return bets.read_bytes() if bets.exists() else b""

    def record_done(self, agencies):
        (self.current() / "done.json").write_bytes(orjson.dumps({"agencies": sorted(agencies)}))


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        # One key for every store of the database, as every host of a deployment shares it.
        self.log_signer = note.Signer.generate("lottery.local/log")

    def _open(self, agencies, winning_number, lock_timeout):
        from app.store.postgres import PostgresStore

        return PostgresStore(self.url, agencies, winning_number, lock_timeout=lock_timeout, log_signer=self.log_signer)

    def bets_csv(self) -> bytes:
        import psycopg

        from app.store.postgres import export_bets

        out = io.BytesIO()
        with psycopg.connect(self.url, autocommit=True) as conn:
            export_bets(conn, out)
        return out.getvalue()

    def record_done(self, agencies):
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for agency in agencies:
                conn.execute(
                    "INSERT INTO lottery_done (round, agency) SELECT max(id), %s FROM lottery_round "
                    "ON CONFLICT DO NOTHING",
                    (agency,),
                )


@pytest.fixture(scope="module")
def pg_url():
    with fresh_database("lottery_contract") as url:
        yield url


@pytest.fixture(params=["files", "postgres"])
def backend(request, tmp_path):
    if request.param == "files":
        made: Backend = FilesBackend(tmp_path / "data")
    else:
        url = request.getfixturevalue("pg_url")
        reset_database(url)
        made = PostgresBackend(url)
    yield made
    made.close()


@pytest.fixture
def store(backend) -> Store:
    return backend.make()


@pytest.fixture
def lottery_log(caplog, monkeypatch):
    """Records of the "lottery" logger at INFO, whatever create_app did to it earlier."""
    logger = logging.getLogger("lottery")
    monkeypatch.setattr(logger, "propagate", False)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def draw_lines(log) -> list[str]:
    return [r.getMessage() for r in log.records if "action: sorteo" in r.getMessage()]


# -- appending ------------------------------------------------------------------------------------


def test_fresh_store(store):
    assert store.status() == RoundStatus(expected=3, done_count=0, drawn=False, bets=0)
    assert store.winners(1) is None
    assert store.upload_state(1, "u") == UploadState("u")
    store.check_health()


def test_append_then_status(backend, store):
    chunks = [chunk(1, 3, "a"), chunk(2, 5, "b"), chunk(1, 1, "c")]
    assert [store.append_chunk(c) for c in chunks] == [ChunkReceipt(1, 3), ChunkReceipt(2, 5), ChunkReceipt(1, 1)]
    assert store.status() == RoundStatus(expected=3, done_count=0, drawn=False, bets=9)
    # stored in order, chunk by chunk, exactly the bytes of the course's bets.csv
    assert backend.bets_csv() == b"".join(c.payload for c in chunks)


def test_stored_rows_load_back_exactly(backend, store, tmp_path):
    rows = [
        (1, 'Pérez, "Ana"', "O'Brien", "0001", "1999-03-17", 7574),
        (1, "Zoë\u00a0Ann", "李", "2", "2000-02-29", 0),
        (1, "a,b", '"', "0000000000", "1900-01-01", 9999),
        (1, "\\.", "\\N", "3", "2024-02-29", 1),
    ]
    store.append_chunk(Chunk.from_rows(1, rows))
    path = tmp_path / "export.csv"
    path.write_bytes(backend.bets_csv())
    assert path.read_bytes() == encode_rows(rows)
    loaded = [
        (b.agency, b.first_name, b.last_name, b.document, b.birthdate.isoformat(), b.number) for b in load_bets(path)
    ]
    assert loaded == rows


def test_key_replay_across_instances_and_restart(backend, store):
    other = backend.make()
    assert store.append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=False)
    before = backend.bets_csv()
    assert other.append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=True)
    assert store.append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=True)
    assert backend.make().append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=True)
    assert backend.bets_csv() == before
    assert other.status().bets == 4


def test_same_key_other_bets_is_a_mismatch(backend, store):
    store.append_chunk(chunk(1, 4, key="k1"))
    before = backend.bets_csv()
    for s, c in (
        (store, chunk(1, 4, "other", key="k1")),
        (backend.make(), chunk(1, 5, key="k1")),
        (backend.make(), chunk(1, 3, key="k1")),
    ):
        with pytest.raises(IdempotencyMismatch):
            s.append_chunk(c)
    assert backend.bets_csv() == before
    assert store.status().bets == 4


def test_keys_are_per_agency_and_keyless_chunks_store_again(store):
    assert store.append_chunk(chunk(1, 2, key="same")).replayed is False
    assert store.append_chunk(chunk(2, 3, key="same")).replayed is False
    assert store.append_chunk(chunk(2, 3, key="same")) == ChunkReceipt(2, 3, replayed=True)
    with pytest.raises(IdempotencyMismatch):
        store.append_chunk(chunk(1, 3, key="same"))
    assert store.append_chunk(chunk(3, 2)).replayed is False
    assert store.append_chunk(chunk(3, 2)).replayed is False
    assert store.status().bets == 9


def test_upload_ranges_replay_overlap_adjacent(backend, store):
    other = backend.make()
    assert store.append_chunk(chunk(1, 10, upload=("up", 0))).replayed is False
    assert other.append_chunk(chunk(1, 10, upload=("up", 0))) == ChunkReceipt(1, 10, replayed=True)
    assert other.append_chunk(chunk(1, 10, upload=("up", 10), start=10)).replayed is False  # adjacent
    assert store.append_chunk(chunk(1, 5, upload=("up", 30), start=30)).replayed is False
    before = backend.bets_csv()
    for s, c in (
        (store, chunk(1, 10, upload=("up", 15), start=15)),
        (other, chunk(1, 2, upload=("up", 29), start=29)),
        (other, chunk(1, 40, upload=("up", 0))),
        (store, chunk(1, 1, upload=("up", 34), start=34)),
    ):
        with pytest.raises(RangeConflict) as caught:
            s.append_chunk(c)
        assert caught.value.committed == [(0, 20), (30, 35)]
    with pytest.raises(IdempotencyMismatch):
        store.append_chunk(chunk(1, 10, "other", upload=("up", 0)))
    assert backend.bets_csv() == before
    assert store.append_chunk(chunk(1, 10, upload=("up", 20), start=20)).replayed is False  # fills the gap
    assert other.upload_state(1, "up").committed == [(0, 35)]
    assert store.status().bets == 35


def test_upload_state_merges_and_uploads_are_per_agency(store):
    for offset, n in ((10, 10), (0, 10), (40, 5), (50, 1)):
        store.append_chunk(chunk(1, n, upload=("file-a", offset), start=offset))
    assert store.append_chunk(chunk(2, 3, upload=("file-a", 0))).replayed is False
    assert store.append_chunk(chunk(1, 5, "z", upload=("file-b", 0))).replayed is False
    state = store.upload_state(1, "file-a")
    assert state.upload_id == "file-a" and state.committed == [(0, 20), (40, 45), (50, 51)] and state.bets == 26
    assert store.upload_state(2, "file-a").committed == [(0, 3)]
    assert store.upload_state(3, "file-a") == UploadState("file-a")


# -- done and the draw -------------------------------------------------------------------------------


def test_done_is_idempotent(backend, store):
    assert store.mark_done(2) == DoneReceipt(2, 1, 3, False)
    assert store.mark_done(2) == DoneReceipt(2, 1, 3, False)
    assert backend.make().mark_done(2) == DoneReceipt(2, 1, 3, False)
    assert store.mark_done(1) == DoneReceipt(1, 2, 3, False)
    assert store.status() == RoundStatus(3, 2, False, 0)


def test_closed_after_done_replays_still_answered(backend, store):
    store.append_chunk(chunk(1, 2, key="k"))
    store.append_chunk(chunk(1, 2, "u", upload=("u", 0)))
    store.mark_done(1)
    before = backend.bets_csv()
    for c in (chunk(1, 2, "new"), chunk(1, 2, "new", key="k2"), chunk(1, 2, "u", upload=("u", 2), start=2)):
        with pytest.raises(AgencyClosed, match="done"):
            backend.make().append_chunk(c)
    assert store.append_chunk(chunk(1, 2, key="k")) == ChunkReceipt(1, 2, replayed=True)
    assert store.append_chunk(chunk(1, 2, "u", upload=("u", 0))) == ChunkReceipt(1, 2, replayed=True)
    with pytest.raises(IdempotencyMismatch):
        store.append_chunk(chunk(1, 2, "other", key="k"))
    assert store.append_chunk(chunk(2, 2)).replayed is False  # other agencies go on
    assert backend.bets_csv().startswith(before)
    assert store.status().bets == 6


def test_one_draw_with_the_right_winners(backend, store, lottery_log):
    other = backend.make()
    rng = random.Random(5)
    for i in range(12):
        agency = rng.randint(1, 3)
        rows = make_rows(
            agency,
            rng.randint(1, 40),
            f"c{i}-",
            start=i * 100,
            winners={i * 100 + j for j in range(40) if rng.random() < 0.15},
        )
        (store if i % 2 else other).append_chunk(Chunk.from_rows(agency, rows, f"key-{i}"))
    assert store.mark_done(3) == DoneReceipt(3, 1, 3, False)
    assert other.mark_done(1) == DoneReceipt(1, 2, 3, False)
    assert store.winners(1) is None and other.winners(2) is None  # before the draw: nothing (a 425)
    assert store.status().drawn is False
    assert other.mark_done(2) == DoneReceipt(2, 3, 3, True)

    expected: dict[int, list[str]] = defaultdict(list)
    rows = backend.rows()
    for row in rows:
        bet = row_to_bet([str(v) for v in row])
        if has_won(bet, WIN):
            expected[bet.agency].append(bet.document)
    assert sum(map(len, expected.values())) > 3
    for agency in (1, 2, 3):
        assert store.winners(agency) == expected[agency] == backend.make().winners(agency)
    assert store.winners(4) == []  # outside the round: nobody
    assert store.status() == RoundStatus(3, 3, True, len(rows))
    assert store.mark_done(1) == DoneReceipt(1, 3, 3, True)
    assert draw_lines(lottery_log) == [
        f"action: sorteo | result: success | apuestas: {len(rows)} | cant_ganadores: {sum(map(len, expected.values()))}"
        f" | ronda: 1 | numero_ganador: {WIN}"
    ]


def test_draw_with_another_winning_number_and_no_bets(backend):
    s = backend.make(agencies=2, winning_number=5)
    s.append_chunk(
        Chunk.from_rows(
            1,
            [
                (1, "a", "b", "11", "2000-01-01", 5),
                (1, "a", "b", "12", "2000-01-01", 7574),
                (1, "a", "b", "13", "2000-01-01", 15),
                (1, "a", "b", "14", "2000-01-01", 5),
            ],
        )
    )
    assert s.mark_done(2).drawn is False  # agency 2 never sent a bet
    assert s.mark_done(1).drawn is True
    assert s.winners(1) == ["11", "14"] and s.winners(2) == []


def test_after_the_draw_replays_answered_new_chunks_refused(backend):
    s = backend.make(agencies=2)
    s.append_chunk(chunk(1, 3, key="k"))
    s.append_chunk(chunk(2, 3, upload=("u", 0)))
    s.mark_done(1)
    assert s.mark_done(2).drawn is True
    before = backend.bets_csv()
    fresh = backend.make(agencies=2)
    assert fresh.append_chunk(chunk(1, 3, key="k")) == ChunkReceipt(1, 3, replayed=True)
    assert fresh.append_chunk(chunk(2, 3, upload=("u", 0))) == ChunkReceipt(2, 3, replayed=True)
    for c in (chunk(1, 3, "new"), chunk(2, 3, "new", key="k2"), chunk(2, 3, upload=("u", 3), start=3)):
        with pytest.raises(AgencyClosed, match="draw"):
            fresh.append_chunk(c)
    with pytest.raises(IdempotencyMismatch):
        fresh.append_chunk(chunk(1, 3, "other", key="k"))
    assert backend.bets_csv() == before


@pytest.mark.parametrize("asks", ["winners", "status"])
def test_every_agency_done_but_no_draw_is_drawn_by_the_next_request(backend, lottery_log, asks):
    s = backend.make(agencies=2)
    s.append_chunk(chunk(1, 5, winners={2}))
    s.append_chunk(chunk(2, 5, winners={0, 4}))
    s.mark_done(1)
    backend.record_done([1, 2])  # the last done was recorded, then the process died before drawing
    fresh = backend.make(agencies=2)
    if asks == "winners":
        assert fresh.winners(2) == ["2000000", "2000004"]
    else:
        assert fresh.status() == RoundStatus(2, 2, True, 10)
    assert s.winners(1) == ["1000002"]
    assert len(draw_lines(lottery_log)) == 1


# -- many writers at once ------------------------------------------------------------------------------


def test_concurrent_appends_from_two_instances_store_each_chunk_once(backend):
    """Four threads on two instances send the same chunks, each in its own order."""
    stores = [backend.make(), backend.make()]
    chunks = []
    for i in range(8):
        chunks.append(chunk(1, 30, "k+u", key=f"a1-{i}", upload=("up1", i * 30), start=i * 30))  # key and range
        chunks.append(chunk(2, 25, "k", key=f"a2-{i}", start=i * 25))  # key only
        chunks.append(chunk(3, 20, "u", upload=("up3", i * 20), start=i * 20))  # range only
    receipts: list[list[ChunkReceipt]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def send(n: int) -> None:
        order = list(range(len(chunks)))
        random.Random(n).shuffle(order)
        barrier.wait()
        try:
            for i in order:
                receipts[n].append((i, stores[n % 2].append_chunk(chunks[i])))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    stored_by = Counter(i for per_thread in receipts for i, r in per_thread if not r.replayed)
    assert stored_by == Counter(range(len(chunks)))  # every chunk stored by exactly one call
    assert all(r.stored == chunks[i].count for per_thread in receipts for i, r in per_thread)
    expected = Counter(row for c in chunks for row in c.rows)
    assert Counter(backend.rows()) == expected
    assert stores[1].status().bets == sum(expected.values())
    assert stores[0].upload_state(1, "up1").committed == [(0, 240)]


def test_last_agencies_done_at_once_on_two_instances_draw_once(backend, lottery_log):
    stores = [backend.make(), backend.make()]
    stores[0].append_chunk(chunk(1, 10, winners={1, 2}))
    stores[1].append_chunk(chunk(2, 10, winners={3}))
    stores[0].mark_done(1)
    barrier = threading.Barrier(6)
    receipts: list[DoneReceipt] = []
    errors: list[BaseException] = []

    def done(s: Store, agency: int) -> None:
        barrier.wait()
        try:
            receipts.append(s.mark_done(agency))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [
        threading.Thread(target=done, args=(stores[n % 2], agency)) for n, agency in enumerate((2, 3, 3, 2, 2, 3))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.agency for r in receipts) == [2, 2, 2, 3, 3, 3]
    assert any(r.drawn for r in receipts)
    assert draw_lines(lottery_log) == [
        f"action: sorteo | result: success | apuestas: 20 | cant_ganadores: 3 | ronda: 1 | numero_ganador: {WIN}"
    ]
    assert stores[1].winners(1) == ["1000001", "1000002"] and stores[0].winners(2) == ["2000003"]
    assert stores[0].status() == RoundStatus(3, 3, True, 20)


# -- PostgreSQL only: what files have no counterpart for ---------------------------------------------------


@pytest.fixture
def pg(pg_url) -> PostgresBackend:
    reset_database(pg_url)
    made = PostgresBackend(pg_url)
    yield made
    made.close()


def test_export_command_writes_the_files_backends_bets_csv(pg, tmp_path):
    files = FilesBackend(tmp_path / "data")
    chunks = [
        Chunk.from_rows(a, [(a, f'N{i}, "x"', "O'Brien", str(i), "1999-12-31", i % 3 * WIN) for i in range(n)])
        for a, n in ((1, 5), (2, 7), (1, 3))
    ]
    for backend in (files, pg):
        s = backend.make()
        for c in chunks:
            s.append_chunk(c)
    out = tmp_path / "out" / "bets.csv"
    out.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "app.export", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LOTTERY_DATABASE_URL": pg.url},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"lottery export: 15 bets of round 1 -> {out}"
    assert out.read_bytes() == (files.current() / "bets.csv").read_bytes()
    assert [b.document for b in load_bets(out)] == [r[3] for c in chunks for r in c.rows]

    # Without LOTTERY_DATABASE_URL: ./data, the server's default (tests/integration/test_export_cli.py).
    files.close()


def test_schema_created_once_when_many_start_at_once(pg):
    import psycopg

    from app.store.postgres import SCHEMA_VERSION

    barrier = threading.Barrier(8)
    made: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            s = pg.make()
            made.append(s)
            s.status()
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(made) == 8
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT version FROM lottery_schema").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT count(*) FROM lottery_round").fetchone() == (1,)


def test_a_newer_schema_is_refused(pg):
    import psycopg

    pg.make()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("UPDATE lottery_schema SET version = 99")
    s = pg.make()  # starts (logs the problem), then answers 503
    with pytest.raises(StorageUnavailable, match="schema version 99"):
        s.status()


def test_connections_the_database_dropped_are_replaced(pg):
    import psycopg

    s = pg.make()
    s.append_chunk(chunk(1, 2))
    with psycopg.connect(pg.url, autocommit=True) as conn:  # e.g. a database restart or failover
        killed = conn.execute(  # each backend gone when this returns (its FATAL sent, its socket closed)
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1
    assert s.append_chunk(chunk(1, 2, "again")).replayed is False  # at once: within the ping's bypass window
    assert s.status().bets == 4


def test_a_connection_that_just_answered_is_handed_out_without_a_ping(pg, monkeypatch):
    from psycopg_pool import ConnectionPool

    from app.store import postgres

    pings = []
    check = ConnectionPool.check_connection
    monkeypatch.setattr(
        ConnectionPool, "check_connection", classmethod(lambda cls, conn: pings.append(conn) or check(conn))
    )
    monkeypatch.setattr(postgres, "PING_AFTER", 60.0)  # "a moment ago", whatever the machine's pace
    s = pg.make()
    for _ in range(2 * postgres.POOL_MAX):  # every pooled connection answers once (the pool hands them in turn)
        s.status()
    pings.clear()
    s.status()
    assert pings == []
    monkeypatch.setattr(postgres, "PING_AFTER", 0.0)  # as if idle longer than the window
    s.status()
    assert len(pings) == 1


def test_database_down_gives_storage_unavailable_at_once():
    import time

    from app.store.postgres import PostgresStore

    started = time.monotonic()
    down = PostgresStore(f"postgresql://lottery@127.0.0.1:{free_port()}/lottery", 2, WIN, lock_timeout=30)
    for call in (
        lambda: down.append_chunk(chunk(1, 2)),
        lambda: down.mark_done(1),
        lambda: down.winners(1),
        down.status,
        lambda: down.upload_state(1, "u"),
        down.check_health,
    ):
        with pytest.raises(StorageUnavailable, match="unreachable"):
            call()
    down.close()
    assert time.monotonic() - started < 10  # 503 at once, not after the 30 s lock timeout


# -- digests per stored range, and an agency's uploads (CONTRACT-uploads.md) ---------------------------


def test_each_stored_range_keeps_its_first_deliverys_digest(backend, store):
    other = backend.make()
    digest = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("a", "b", "c", "d")}
    with_digest = dataclasses.replace  # the same chunk, as if its body had been sent another way
    first = chunk(1, 5, upload=("up", 5), start=5)
    assert store.append_chunk(with_digest(first, digest=digest["a"])).replayed is False
    assert other.append_chunk(with_digest(chunk(1, 5, upload=("up", 0)), digest=digest["b"])).replayed is False
    # the same bets again (say CRLF instead of LF): a replay, and the first digest stays
    assert other.append_chunk(with_digest(first, digest=digest["c"])) == ChunkReceipt(1, 5, replayed=True)
    assert store.append_chunk(chunk(1, 2, upload=("up", 20), start=20)).replayed is False  # no digest known
    assert other.append_chunk(with_digest(chunk(2, 3, upload=("up", 0)), digest=digest["d"])).replayed is False
    for s in (store, other, backend.make()):
        state = s.upload_state(1, "up")
        assert state.spans == (
            StoredSpan(0, 5, digest["b"]),
            StoredSpan(5, 10, digest["a"]),
            StoredSpan(20, 22, None),
        )
        assert state.committed == [(0, 10), (20, 22)] and state.bets == 12
        assert s.upload_state(2, "up").spans == (StoredSpan(0, 3, digest["d"]),)


def test_an_agencys_uploads_in_first_stored_order(backend, store):
    store.append_chunk(chunk(1, 4, "z", upload=("zeta", 0)))
    store.append_chunk(chunk(1, 3, upload=("alpha", 0)))
    store.append_chunk(chunk(1, 2, "z", upload=("zeta", 10), start=10))
    store.append_chunk(chunk(2, 5, upload=("alpha", 0)))
    store.append_chunk(chunk(1, 6, "plain"))  # no upload: not listed
    store.append_chunk(chunk(1, 6, "keyed", key="k"))
    for s in (store, backend.make()):
        assert s.uploads(1) == [UploadSummary("zeta", 6, 2), UploadSummary("alpha", 3, 1)]
        assert s.uploads(2) == [UploadSummary("alpha", 5, 1)]
        assert s.uploads(3) == []


# -- the round's parameters are pinned when it starts (issue 9, item 3) -----------------------------------


def test_a_restart_with_other_settings_keeps_the_rounds_parameters(backend):
    """3 agencies, all with bets (agency 3 has the winner), 1 and 2 done; restarted with 2 agencies
    and another winning number: no draw until agency 3 is done, and its winner is reported."""
    s = backend.make(agencies=3, winning_number=WIN)
    s.append_chunk(chunk(1, 4))
    s.append_chunk(chunk(2, 4))
    s.append_chunk(chunk(3, 4, winners={2}))
    s.mark_done(1)
    s.mark_done(2)
    s.close()

    restarted = backend.make(agencies=2, winning_number=WIN + 1)
    assert (restarted.agencies, restarted.winning_number) == (3, WIN)
    assert restarted.status() == RoundStatus(3, 2, False, 12)
    assert restarted.winners(1) is None
    assert restarted.append_chunk(chunk(3, 2, "more", winners={0})).replayed is False
    assert restarted.mark_done(3) == DoneReceipt(3, 3, 3, True)
    assert restarted.winners(3) == ["3000002", "3000000"]
    assert restarted.winners(1) == [] and restarted.winners(2) == []


def test_an_agency_outside_the_recorded_round_stores_nothing(backend):
    backend.make(agencies=2).append_chunk(chunk(1, 3))
    more = backend.make(agencies=5)
    assert more.agencies == 2
    for call in (lambda: more.append_chunk(chunk(3, 3)), lambda: more.mark_done(3)):
        with pytest.raises(AgencyClosed, match="agency 3 is not part of this round"):
            call()
    more.mark_done(1)
    assert more.mark_done(2).drawn is True
    assert more.status() == RoundStatus(2, 2, True, 3)


def make_v1_database(url: str, drawn_with: int | None = None) -> None:
    """A database as today's release (schema version 1) leaves it: one upload chunk stored."""
    import psycopg

    from app.store.postgres import SCHEMA

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO lottery_schema (id, version) VALUES (1, 1)")
        c = chunk(1, 3, upload=("old", 0), winners={1})
        conn.execute(
            "INSERT INTO lottery_chunks (agency, fingerprint, count, upload_id, upload_start, upload_end) "
            "VALUES (1, %s, 3, 'old', 0, 3)",
            (c.fingerprint,),
        )
        with conn.cursor().copy(
            "COPY lottery_bets (agency, first_name, last_name, document, birthdate, number) FROM STDIN (FORMAT csv)"
        ) as copy:
            copy.write(c.payload)
        if drawn_with is not None:
            conn.execute("UPDATE lottery_round SET drawn = true, winning_number = %s, winners = '{}'", (drawn_with,))


def test_a_version_1_database_is_migrated_by_the_workers_that_start_on_it(pg):
    import psycopg

    from app.store.postgres import SCHEMA_VERSION

    make_v1_database(pg.url)
    barrier = threading.Barrier(4)
    made: list[Store] = []

    def start() -> None:
        barrier.wait()
        made.append(pg.make(agencies=2, winning_number=WIN))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(made) == 4 and all((s.agencies, s.winning_number) == (2, WIN) for s in made)
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT version FROM lottery_schema").fetchall() == [(SCHEMA_VERSION,)]
    s = made[0]
    assert s.upload_state(1, "old").spans == (StoredSpan(0, 3, None),)  # stored before digests existed
    assert s.append_chunk(dataclasses.replace(chunk(1, 3, upload=("old", 0), winners={1}), digest="x")).replayed
    assert s.append_chunk(dataclasses.replace(chunk(1, 2, upload=("old", 3), start=3), digest="d" * 64)).stored == 2
    assert s.upload_state(1, "old").spans == (StoredSpan(0, 3, None), StoredSpan(3, 5, "d" * 64))
    # recorded at that first start: a later start with other settings keeps them
    assert (pg.make(agencies=4, winning_number=1).agencies, pg.make(agencies=4).winning_number) == (2, WIN)
    s.mark_done(1)
    assert s.mark_done(2).drawn and s.winners(1) == ["1000001"]


def test_a_drawn_version_1_round_keeps_the_number_it_was_drawn_with(pg):
    make_v1_database(pg.url, drawn_with=1234)
    s = pg.make(agencies=3, winning_number=WIN)
    assert (s.agencies, s.winning_number) == (3, 1234)
    assert s.status().drawn is True


def test_a_chunk_of_a_long_upload_is_decided_by_one_index_step(pg):
    """The queries that decide a batch of chunks read one index entry per chunk (its upload's
    neighbouring range, its key), not the upload's every range nor the table."""
    import psycopg

    from app.store.pg_chunks import NEIGHBOUR_SPANS, STORED_KEYS

    s = pg.make()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lottery_chunks (round, agency, idempotency_key, fingerprint, count, upload_id, upload_start, "
            "upload_end) SELECT 1, 1 + g % 2, 'k' || g, 'f', 1, 'long', g / 2, g / 2 + 1 "
            "FROM generate_series(0, 39999) g"
        )
        conn.execute("ANALYZE lottery_chunks")

        def plan(query: str, params: tuple) -> str:
            return "\n".join(row[0] for row in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query, params))

        spans = plan(NEIGHBOUR_SPANS, ([0, 1], [1, 2], ["long", "long"], [20_001, 7], 1))
        keys = plan(STORED_KEYS, ([0, 1], [1, 2], ["k2", "k5"], 1))
    # One backward step of the ranges index per chunk (two chunks: two loops of one row).
    assert re.search(r"Index Scan Backward using lottery_chunks_ranges .*rows=1 loops=2\)", spans), spans
    assert re.search(r"Index Scan using lottery_chunks_key .*rows=1 loops=2\)", keys), keys
    assert s.append_chunk(chunk(1, 2, upload=("long", 20_000), start=20_000)).stored == 2
    with pytest.raises(RangeConflict):
        s.append_chunk(chunk(1, 2, upload=("long", 19_999), start=19_999))


def test_the_master_warns_when_the_database_round_has_other_parameters(pg):
    from app.settings import Settings
    from app.store import round_settings_warning

    assert round_settings_warning(Settings(database_url=pg.url, agencies=2)) is None  # no round yet
    pg.make(agencies=3, winning_number=WIN)
    assert round_settings_warning(Settings(database_url=pg.url, agencies=3, winning_number=WIN)) is None
    warning = round_settings_warning(Settings(database_url=pg.url, agencies=2, winning_number=WIN))
    assert warning is not None and "(recorded in the database)" in warning
    assert "LOTTERY_AGENCIES=3 LOTTERY_WINNING_NUMBER=7574" in warning and "LOTTERY_AGENCIES=2" in warning
    down = f"postgresql://lottery@127.0.0.1:{free_port()}/lottery"
    assert round_settings_warning(Settings(database_url=down, agencies=2)) is None  # the workers will say why
