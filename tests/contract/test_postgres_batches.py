"""PostgreSQL's group commit of chunks (app/store/pg_chunks.py): the chunks a process has queued
at once are stored in one transaction, each still decided on its own.

A batch is formed for real: the store's committer is paused while threads queue their chunks
(in an order the test sees happen), then let go; its next batch takes the whole queue. Which
transaction stored a row is PostgreSQL's own record of it: the row's ``xmin``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import psycopg
import pytest

from app.store import AgencyClosed, Chunk, ChunkReceipt, DoneReceipt, IdempotencyMismatch, RangeConflict
from app.store.postgres import PostgresStore
from tests.helpers import WIN, chunk
from tests.postgres_db import fresh_database, reset_database

Outcome = ChunkReceipt | Exception


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_database("lottery_batches") as url:
        yield url


@pytest.fixture
def url(pg_url: str) -> str:
    reset_database(pg_url)
    return pg_url


@pytest.fixture
def make(url: str) -> Iterator[Callable[[], PostgresStore]]:
    """Store instances on one database: each stands for a worker process (of one host or another)."""
    made: list[PostgresStore] = []

    def new() -> PostgresStore:
        made.append(PostgresStore(url, 4, WIN, lock_timeout=10))
        return made[-1]

    yield new
    for store in made:
        store.close()


def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.002)


def send(store: PostgresStore, chunk: Chunk) -> Outcome:
    try:
        return store.append_chunk(chunk)
    except Exception as error:  # noqa: BLE001 - the outcome under test
        return error


def send_as_one_batch(store: PostgresStore, chunks: list[Chunk], before_release: Callable[[], None] = lambda: None):
    """Each chunk from a thread of its own, queued in this order while the store's committer is
    paused; then it goes on. Returns the threads and the outcomes they fill in."""
    outcomes: list[Outcome | None] = [None] * len(chunks)
    threads = []

    def run(i: int) -> None:
        outcomes[i] = send(store, chunks[i])

    with store._committer.paused():  # nobody commits while the queue fills
        for i in range(len(chunks)):
            threads.append(threading.Thread(target=run, args=(i,)))
            threads[-1].start()
            until(lambda: store._committer.queued() == i + 1, f"chunk {i} queued")  # noqa: B023
        before_release()
    return threads, outcomes


def batch(store: PostgresStore, chunks: list[Chunk]) -> list[Outcome | None]:
    threads, outcomes = send_as_one_batch(store, chunks)
    for thread in threads:
        thread.join(30)
    return outcomes


def transactions(url: str, keys: list[str]) -> set[str]:
    """The transactions that stored these keys' chunk rows and their bets."""
    with psycopg.connect(url, autocommit=True) as conn:
        chunks = conn.execute(
            "SELECT DISTINCT xmin::text FROM lottery_chunks WHERE idempotency_key = ANY(%s)", (keys,)
        ).fetchall()
        bets = conn.execute(
            "SELECT DISTINCT b.xmin::text FROM lottery_bets b JOIN lottery_chunks c ON c.id = b.chunk_id "
            "WHERE c.idempotency_key = ANY(%s)",
            (keys,),
        ).fetchall()
    return {row[0] for row in chunks} | {row[0] for row in bets}


def stored_rows(url: str, key: str) -> list[tuple]:
    """The bets stored under the chunk of ``key``, in stored order."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT b.agency, b.first_name, b.last_name, b.document, b.birthdate, b.number FROM lottery_bets b "
            "JOIN lottery_chunks c ON c.id = b.chunk_id WHERE c.idempotency_key = %s ORDER BY b.id",
            (key,),
        ).fetchall()


def chunk_rows(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("SELECT count(*) FROM lottery_chunks").fetchone()[0])


def test_chunks_queued_together_are_stored_in_one_transaction(make, url):
    store = make()
    chunks = [chunk(1 + i % 4, 3 + i, f"t{i}", key=f"k{i}", start=10 * i) for i in range(6)]
    chunks.append(chunk(2, 4, "up", key="k-up", upload=("up", 0)))
    outcomes = batch(store, chunks)
    assert outcomes == [ChunkReceipt(c.agency, c.count) for c in chunks]
    keys = [c.idempotency_key for c in chunks]
    assert len(transactions(url, keys)) == 1  # every chunk row and every bet: one commit
    for c in chunks:  # each bet under its own chunk, in its order
        assert stored_rows(url, c.idempotency_key) == c.rows
    assert store.status().bets == sum(c.count for c in chunks)
    assert store.upload_state(2, "up").committed == [(0, 4)]


def test_a_refused_chunk_does_not_sink_the_others_of_its_batch(make, url):
    store = make()
    used = chunk(1, 5, "used", key="used")
    assert store.append_chunk(used).stored == 5
    assert store.append_chunk(chunk(2, 10, "first", key="first", upload=("up", 0))).stored == 10
    store.mark_done(3)
    outcomes = batch(
        store,
        [
            chunk(1, 2, "a", key="a"),  # stored
            chunk(3, 2, "closed", key="closed"),  # agency 3 said done
            chunk(1, 5, "other", key="used"),  # a used key, other bets
            chunk(2, 10, "over", key="over", upload=("up", 5), start=5),  # overlaps stored lines 0-10
            used,  # a retry: answered from the stored chunk
            chunk(5, 2, "outside", key="outside"),  # not an agency of the round
            chunk(2, 10, "next", key="next", upload=("up", 10), start=10),  # next to the stored lines: stored
        ],
    )
    assert outcomes[0] == ChunkReceipt(1, 2)
    assert isinstance(outcomes[1], AgencyClosed) and "agency 3 already said done" in str(outcomes[1])
    assert isinstance(outcomes[2], IdempotencyMismatch)
    assert isinstance(outcomes[3], RangeConflict) and outcomes[3].committed == [(0, 10)]
    assert outcomes[4] == ChunkReceipt(1, 5, replayed=True)
    assert isinstance(outcomes[5], AgencyClosed) and "agency 5 is not part of this round" in str(outcomes[5])
    assert outcomes[6] == ChunkReceipt(2, 10)
    assert len(transactions(url, ["a", "next"])) == 1
    assert chunk_rows(url) == 4  # used, first, a, next
    assert store.status().bets == 5 + 10 + 2 + 10
    assert store.upload_state(2, "up").committed == [(0, 20)]


def test_chunks_of_a_batch_that_meet_are_answered_after_the_first_is_committed(make, url):
    """The same key twice, the same range twice, overlapping ranges of one upload: the second is
    decided against the first once it is committed; adjacent ranges go in together."""
    store = make()
    first = chunk(1, 3, "a", key="K")
    span = chunk(2, 10, "s", key="S", upload=("u", 0))
    outcomes = batch(
        store,
        [
            first,
            chunk(1, 3, "a", key="K"),  # the same chunk again: a replay of the first
            chunk(1, 3, "b", key="K"),  # the same key, other bets
            span,
            chunk(2, 10, "s", key="S2", upload=("u", 0)),  # the same lines again, another key: a replay
            chunk(2, 10, "o", key="O", upload=("u", 5), start=5),  # overlaps lines 0-10
            chunk(2, 10, "n", key="N", upload=("u", 10), start=10),  # next to them: stored with them
        ],
    )
    assert outcomes[0] == ChunkReceipt(1, 3)
    assert outcomes[1] == ChunkReceipt(1, 3, replayed=True)
    assert isinstance(outcomes[2], IdempotencyMismatch)
    assert outcomes[3] == ChunkReceipt(2, 10)
    assert outcomes[4] == ChunkReceipt(2, 10, replayed=True)
    assert isinstance(outcomes[5], RangeConflict) and outcomes[5].committed == [(0, 20)]
    assert outcomes[6] == ChunkReceipt(2, 10)
    assert len(transactions(url, ["K", "S", "N"])) == 1
    assert chunk_rows(url) == 3
    assert stored_rows(url, "K") == first.rows and stored_rows(url, "S") == span.rows


def test_a_key_another_host_commits_meanwhile_is_answered_as_a_replay(make, url):
    """Another host inserts a key of this batch and commits while the batch waits on it: the
    unique index refuses the batch's copy, the batch is decided again and that chunk replayed."""
    store = make()
    store.status()  # the round exists
    theirs, other = chunk(1, 4, "t", key="T"), chunk(2, 3, "o", key="O")
    with psycopg.connect(url) as host:  # a transaction of another host, not committed yet
        host.execute(
            "INSERT INTO lottery_chunks (round, agency, idempotency_key, fingerprint, count) VALUES (1, 1, 'T', %s, 4)",
            (theirs.fingerprint,),
        )
        host.execute("INSERT INTO lottery_bets (agency, first_name, last_name, document, birthdate, number) "
                     "VALUES (1, 'x', 'y', '1', '2000-01-01', 1), (1, 'x', 'y', '2', '2000-01-01', 2), "
                     "(1, 'x', 'y', '3', '2000-01-01', 3), (1, 'x', 'y', '4', '2000-01-01', 4)")  # fmt: skip
        threads, outcomes = send_as_one_batch(store, [theirs, other])

        def waiting_on_the_key() -> bool:
            with psycopg.connect(url, autocommit=True) as watch:
                row = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND wait_event = 'transactionid'"
                ).fetchone()
            return row is not None and row[0] == 1

        until(waiting_on_the_key, "the batch waits on the other host's key")
        host.commit()
    for thread in threads:
        thread.join(30)
    assert outcomes == [ChunkReceipt(1, 4, replayed=True), ChunkReceipt(2, 3)]
    assert chunk_rows(url) == 2
    assert stored_rows(url, "O") == other.rows
    assert store.status().bets == 4 + 3


def test_the_same_chunks_from_many_threads_of_two_hosts_are_stored_once(make, url):
    """Six threads on each of two hosts send the same chunks, each in its own order."""
    hosts = [make(), make()]
    chunks = []
    for i in range(6):
        chunks.append(chunk(1, 5, "ku", key=f"a1-{i}", upload=("up1", i * 5), start=i * 5))
        chunks.append(chunk(2, 4, "k", key=f"a2-{i}", start=i * 4))
        chunks.append(chunk(3, 3, "u", upload=("up3", i * 3), start=i * 3))
    receipts: list[list[tuple[int, Outcome]]] = [[] for _ in range(12)]
    barrier = threading.Barrier(12)

    def run(n: int) -> None:
        order = list(range(len(chunks)))
        random.Random(n).shuffle(order)
        barrier.wait()
        for i in order:
            receipts[n].append((i, send(hosts[n % 2], chunks[i])))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    outcomes = [outcome for per_thread in receipts for _, outcome in per_thread]
    assert [o for o in outcomes if not isinstance(o, ChunkReceipt)] == []
    stored_by = Counter(i for per_thread in receipts for i, r in per_thread if not r.replayed)  # type: ignore[union-attr]
    assert stored_by == Counter(range(len(chunks)))  # every chunk stored by exactly one call
    assert chunk_rows(url) == len(chunks)
    assert hosts[0].status().bets == sum(c.count for c in chunks)
    assert hosts[1].upload_state(1, "up1").committed == [(0, 30)]
    assert hosts[0].upload_state(3, "up3").committed == [(0, 18)]


def test_a_batch_goes_to_the_round_another_host_opened_meanwhile(make, url):
    """This process last saw round 1 (4 agencies); another host drew it and opened round 2 with 5:
    the batch is locked and decided for round 2, in the same transaction."""
    here, there = make(), make()
    assert here.append_chunk(chunk(1, 2, "r1", key="k")).stored == 2
    for agency in range(1, 5):
        there.mark_done(agency)
    assert there.open_round(agencies=5).round == 2
    outcomes = batch(here, [chunk(5, 3, "new", key="n"), chunk(1, 2, "r1", key="k")])  # keys are per round
    assert outcomes == [ChunkReceipt(5, 3), ChunkReceipt(1, 2)]
    assert here.status().round_id == 2 and here.status().bets == 5
    assert there.status(round=1).bets == 2


def test_the_dones_of_a_batch_are_inserted_together_and_the_last_one_draws(make, url):
    store = make()
    assert store.append_chunk(chunk(1, 5, "w", key="w", winners={0, 3})).stored == 5
    store.mark_done(1)
    agencies = [2, 2, 9, 1, 3, 4]  # twice, outside the round, already done, and the last two
    outcomes: list[object] = [None] * len(agencies)

    def run(i: int) -> None:
        try:
            outcomes[i] = store.mark_done(agencies[i])
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes[i] = error

    threads = []
    with store._done_lock:  # the dones' turn: they queue up, then go as one batch
        for i in range(len(agencies)):
            threads.append(threading.Thread(target=run, args=(i,)))
            threads[-1].start()
            until(lambda: len(store._done_queues.get(None, ())) == i + 1, f"done {i} queued")  # noqa: B023
    for thread in threads:
        thread.join(30)
    assert outcomes[:2] == [DoneReceipt(2, 2, 4, False), DoneReceipt(2, 2, 4, False)]
    assert isinstance(outcomes[2], AgencyClosed)
    assert outcomes[3:] == [DoneReceipt(1, 2, 4, False), DoneReceipt(3, 3, 4, False), DoneReceipt(4, 4, 4, True)]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT agency, xmin::text FROM lottery_done ORDER BY agency").fetchall()
    assert [agency for agency, _ in rows] == [1, 2, 3, 4]
    assert len({xmin for agency, xmin in rows if agency != 1}) == 1  # 2, 3 and 4: one transaction
    assert store.status().done_count == 4 and store.status().drawn
    assert store.done_agencies(0, 10) == [1, 2, 3, 4]
    assert store.winners(1) == [chunk(1, 5, "w", winners={0, 3}).rows[i][3] for i in (0, 3)]


def test_a_done_waits_for_its_agencys_batch_in_flight(make, url):
    """A batch holds its agencies' shared locks until it commits: a done of one of them (on
    another host) waits for it, and the chunk is stored, not refused as after a done."""
    here, there = make(), make()
    here.status()  # the round exists
    mine = chunk(1, 4, "m", key="K")

    def waiting(event: str) -> bool:
        with psycopg.connect(url, autocommit=True) as watch:
            row = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND wait_event = %s",
                (event,),
            ).fetchone()
        return row is not None and row[0] == 1

    with psycopg.connect(url) as host:  # another host's transaction with the same key, not committed
        host.execute(
            "INSERT INTO lottery_chunks (round, agency, idempotency_key, fingerprint, count) VALUES (1, 1, 'K', 'f', 1)"
        )
        threads, outcomes = send_as_one_batch(here, [mine])
        until(lambda: waiting("transactionid"), "the batch waits on the other host's key, its locks held")
        done: list[object] = []
        closing = threading.Thread(target=lambda: done.append(there.mark_done(1)))
        closing.start()
        until(lambda: waiting("advisory"), "the done waits on the agency's lock")
        assert outcomes == [None] and done == []  # neither answered while the batch is in flight
        host.rollback()  # the other host gives up its key: the batch goes on and commits
    for thread in [*threads, closing]:
        thread.join(30)
    assert outcomes == [ChunkReceipt(1, 4)]
    assert done == [DoneReceipt(1, 1, 4, False)]
    assert there.status().bets == 4 and there.status().done_count == 1


def _scanned(plan: dict, table: str) -> tuple[int, list[str]]:
    """The rows a plan's nodes read from ``table`` (actual rows x loops), and those nodes' kinds."""
    rows, kinds = 0, []
    if plan.get("Relation Name") == table:
        rows += int(plan["Actual Rows"]) * int(plan["Actual Loops"]) + int(plan.get("Rows Removed by Filter", 0))
        kinds.append(plan["Node Type"])
    for child in plan.get("Plans", ()):
        more, found = _scanned(child, table)
        rows, kinds = rows + more, kinds + found
    return rows, kinds


def test_a_batchs_key_lookup_reads_its_keys_rows_not_the_rounds(url: str, make: Callable[[], PostgresStore]) -> None:
    # One-bet POSTs on PostgreSQL ran at 0.14x the bare endpoint: the batch's lookup of its
    # Idempotency-Keys, prepared once the connection had run it five times (psycopg), got a
    # generic plan made with no statistics yet that read every chunk row of the round per
    # batch (20,513,200 rows fetched for 1,702 batches). Whatever the plan cache holds, a
    # batch reads one index probe per key.
    from app.store import pg_chunks

    store = make()
    assert isinstance(store.append_chunk(chunk(1, 1, key="first")), ChunkReceipt)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lottery_chunks (round, agency, idempotency_key, fingerprint, count) "
            "SELECT 1, 1 + g % 4, 'k' || g, 'f', 1 FROM generate_series(1, 20000) g"
        )  # as many one-bet chunks, statistics not gathered yet (no ANALYZE)
        conn.execute("SET plan_cache_mode = force_generic_plan")
        keys = [f"k{n}" for n in range(1, 20000, 1999)] + ["none"]
        agencies = [1 + n % 4 for n in range(1, 20000, 1999)] + [1]
        query = re.sub("%[sb]", "$%d", pg_chunks.STORED_KEYS) % (1, 2, 3, 4)  # (%b: sent in binary)
        conn.execute(f"PREPARE lookup AS {query}")
        explain = psycopg.ClientCursor(conn)  # the values bound here: EXPLAIN takes no parameters
        explain.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE lookup(%s::int[], %s::int[], %s::text[], 1)",
            (list(range(len(keys))), agencies, keys),
        )
        plan = explain.fetchone()[0][0]["Plan"]
    rows, kinds = _scanned(plan, "lottery_chunks")
    assert "Seq Scan" not in kinds, kinds
    assert rows <= len(keys), f"read {rows} chunk rows for {len(keys)} keys ({kinds})"


def test_a_batchs_chunk_rows_hold_every_column_as_sent(url: str) -> None:
    """INSERT_CHUNKS takes the batch as one JSON parameter: each row's columns, NULLs, the salt's
    bytes and the key drawn for each chunk without an Idempotency-Key come out of lottery_chunks as
    they went in."""
    from tlog import b64, note

    store = PostgresStore(url, 4, WIN, lock_timeout=10, log_signer=note.Signer.generate("lottery.local/log"))
    try:
        chunks = [
            chunk(1, 2, "a", key='k-1"quoted"\\{}'),  # JSON's escapes
            chunk(2, 3, "b", upload=("up.1", 10)),
            chunk(3, 1, "c"),
        ]
        outcomes = batch(store, chunks)
        assert all(isinstance(o, ChunkReceipt) for o in outcomes), outcomes
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT agency, idempotency_key, fingerprint, count, upload_id, upload_start, upload_end, "
                "body_digest, log_index, salt, auto_key FROM lottery_chunks ORDER BY agency"
            ).fetchall()
    finally:
        store.close()
    receipts = [o for o in outcomes if isinstance(o, ChunkReceipt)]
    expected = [
        (c.agency, c.idempotency_key, c.fingerprint, c.count)
        + ((c.upload.upload_id, c.upload.offset, c.upload.offset + c.count) if c.upload else (None, None, None))
        + (c.digest, r.log_index, b64.decode(r.salt))
        for c, r in zip(chunks, receipts, strict=True)
    ]
    assert [row[:10] for row in rows] == expected
    assert [row[10] is not None and row[10].startswith("auto-") for row in rows] == [False, True, True]
    assert len({r.log_index for r in receipts}) == 3


@pytest.mark.parametrize("writer", ["chunk", "draw"])
def test_a_writer_far_behind_the_log_reads_it_a_page_at_a_time_and_signs_the_whole_tree(url, monkeypatch, writer):
    """A host that has not read the log for a while (another host wrote to it meanwhile) writes
    to it: a chunk batch, or the round's close at the draw (a rare writer). It reads the leaves it
    lacks before the log's lock, a bounded page at a time, and signs the checkpoint of the whole
    log, its own leaf in. (A new process's first batch reads its tree in bounded steps already.)"""
    from app.store import pg_chunks, pg_log
    from tlog import checkpoint, merkle, note

    monkeypatch.setattr(pg_log, "CATCH_UP_PAGE", 2)
    pages: list[int] = []
    real_execute = psycopg.Connection.execute

    def counted(self, query, params=None, **kwargs):
        if query == pg_log.SINCE_PAGE:
            pages.append(params[0])  # the index each page starts at
        return real_execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counted)
    signer = note.Signer.generate("lottery.local/log")
    busy = PostgresStore(url, 2, WIN, lock_timeout=10, log_signer=signer)
    late = PostgresStore(url, 2, WIN, lock_timeout=10, log_signer=signer)
    try:
        assert isinstance(send(late, chunk(2, 1, "first", key="first")), ChunkReceipt)  # its tree: 2 leaves
        for n in range(5):
            assert isinstance(send(busy, chunk(1, 1, f"c{n}", key=f"k{n}")), ChunkReceipt)
        if writer == "draw":
            busy.mark_done(1)
        pages.clear()
        if writer == "chunk":
            assert isinstance(send(late, chunk(2, 1, "late", key="late")), ChunkReceipt)
        else:
            assert late.mark_done(2).drawn  # the last done: this store draws, and appends the close
        # the log's leaves 2 to 6 (busy's chunks) were not in its tree: pages of 2 from leaf 2 on
        assert pages == [2, 4, 6]
        with psycopg.connect(url) as conn:
            stored = [bytes(r[0]) for r in conn.execute("SELECT leaf FROM lottery_log_leaves ORDER BY idx")]
            size, note_bytes = conn.execute(pg_chunks.LATEST_CHECKPOINT).fetchone()
        assert size == len(stored) == 8  # the round's opening, 6 chunks, the late host's last leaf
        signed = checkpoint.open_checkpoint(bytes(note_bytes), signer.verifier(), "lottery.local/log")
        assert (signed.size, signed.root) == (8, merkle.root_of(8, [merkle.leaf_hash(leaf) for leaf in stored]))
    finally:
        busy.close()
        late.close()
