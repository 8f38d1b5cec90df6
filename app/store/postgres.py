"""The PostgreSQL backend: several hosts, one round, agreement through one database.

Same answers and guarantees as the file backend (app/store/files.py); what the file lock
does there, transactions and locks in the database do here (README "PostgreSQL backend"):

``lottery_chunks``  one row per committed chunk: agency, idempotency key (unique per agency),
                    SHA-256 fingerprint of the stored CSV bytes, count, upload range.
``lottery_bets``    the bets, one row each, tagged with their chunk: stored order is
                    ``(chunk_id, id)``. A chunk's row and its bets go in **one transaction**
                    (the bets by COPY), so a chunk is stored all or nothing, with its key;
                    the chunks a worker has queued at once share it (app/store/pg_chunks.py).
``lottery_done``    the agencies that said done (primary key: an idempotent insert).
``lottery_round``   a row per round: its agencies and winning number (recorded when it
                    starts: a restart with other settings keeps them), ``drawn``, and counts
                    kept as they change (``done_count`` in the done's transaction, ``bets`` and
                    ``winners_count`` by the draw), so no request counts every agency's rows.
                    The draw runs with this row locked FOR UPDATE and only while ``drawn`` is
                    false, so it happens once.
``lottery_winners`` the draw's result, a row per agency that has winners (its documents in
                    stored order): a winners request reads its agency's row only.

Locks (all released at commit or rollback, so a dead host never leaves one behind):

- ``pg_advisory_xact_lock(agency, hash(upload_id))``: chunks of one upload are checked
  against its stored ranges and inserted one batch at a time, so no line of an upload is stored
  twice, whatever the chunk boundaries. Different uploads and agencies do not wait.
- ``pg_advisory_xact_lock_shared(agency key)`` for every chunk and the exclusive form for
  that agency's ``done``: done waits for the agency's chunks in flight, and a chunk that
  comes after done sees it and is refused.
- the round row FOR UPDATE: whoever completes the set of done agencies, on whichever host,
  the last of them to take this lock sees every done row and performs the draw.

Every worker process has its own small connection pool. Any database failure (down,
restarting, read-only, full disk) becomes :class:`StorageUnavailable` (503), never a 500.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, BinaryIO

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from app import rounds as rules
from app.store import flow, pg_chunks, pg_log
from app.store.base import (
    Chunk,
    ChunkReceipt,
    DoneReceipt,
    RoundDraw,
    RoundError,
    RoundInfo,
    RoundLog,
    RoundNotFound,
    RoundParameters,
    RoundStatus,
    StorageBusy,
    StorageUnavailable,
    StoredSpan,
    StoreError,
    UploadState,
    UploadSummary,
)
from app.store.batch import Committer, Ticket, fail_unsettled, group_commit, turn
from app.store.pg_chunks import AGENCY_LOCK_BASE, BET_COLUMNS, ChunkTicket
from app.store.pg_watchdog import CHECK_DEADLINE, KEEPALIVES, STATEMENT_MARGIN, Watchdog
from app.store.stats import AgencyStats, RoundStats
from app.store.txlog import TransactionalLog
from tlog import b64, leaves, note
from tlog import draw as committed_draw

DoneTicket = Ticket[int, flow.DoneOutcome]

log = logging.getLogger("lottery")

SCHEMA_VERSION = 5
# Advisory lock keys. The one-bigint form and the two-int form never collide (PostgreSQL
# keeps them apart), so agency keys live in the bigint space and upload keys in the pair space.
SCHEMA_LOCK = 0x4C4F5454_00000001  # "LOTT" | 1: schema creation and migration
ROUNDS_LOCK = 0x4C4F5454_00000002  # opening a round: one at a time, and the next one sees it
POOL_MIN, POOL_MAX = 1, 8
HEALTH_TIMEOUT = 5.0
DOWN_TIMEOUT = 1.0  # how long a request waits for a connection while the database seems down
# libpq's, per host of a multi-host URL (its minimum is 2 s): a hung host never refuses, so this
# is what moving on to the next host costs (app/store/pg_watchdog.py).
CONNECT_TIMEOUT = 3
UNIQUE_RETRIES = 5
# A pooled connection that answered this recently, and whose socket has nothing to read (a
# server that ended the session, or a restart, sends its FATAL and closes: readable), is handed
# out without its ping: an empty query, a round trip per request. (HikariCP's aliveBypassWindowMs,
# with its default.) A host that hangs within the window is found by the request itself: its
# watchdog deadline and a 503, as for a request in flight when it froze.
PING_AFTER = 0.5

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS lottery_schema (
        id int PRIMARY KEY CHECK (id = 1),
        version int NOT NULL
    )""",
    "CREATE SEQUENCE IF NOT EXISTS lottery_chunk_ids",
    """CREATE TABLE IF NOT EXISTS lottery_chunks (
        id bigint PRIMARY KEY DEFAULT nextval('lottery_chunk_ids'),
        agency int NOT NULL,
        idempotency_key text,
        fingerprint text NOT NULL,
        count int NOT NULL,
        upload_id text,
        upload_start bigint,
        upload_end bigint,
        stored_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((upload_id IS NULL) = (upload_start IS NULL) AND (upload_id IS NULL) = (upload_end IS NULL))
    )""",
    # An Idempotency-Key is unique per agency, in the database.
    """CREATE UNIQUE INDEX IF NOT EXISTS lottery_chunks_key
        ON lottery_chunks (agency, idempotency_key) WHERE idempotency_key IS NOT NULL""",
    # Two non-empty chunks of one upload that start on the same line always overlap: a
    # safety net under the advisory lock, which checks every overlap.
    """CREATE UNIQUE INDEX IF NOT EXISTS lottery_chunks_upload
        ON lottery_chunks (agency, upload_id, upload_start)
        WHERE upload_id IS NOT NULL AND upload_end > upload_start""",
    # Finds a chunk's stored neighbours in its upload, and an upload's progress.
    "CREATE INDEX IF NOT EXISTS lottery_chunks_ranges ON lottery_chunks (agency, upload_id, upload_start)",
    "ALTER SEQUENCE lottery_chunk_ids OWNED BY lottery_chunks.id",
    # chunk_id defaults to the chunk row inserted just before in the same session and
    # transaction (a batch of chunks names each line's chunk_id instead: pg_chunks.py). id keeps the
    # order of the rows inside a chunk; the table has no index, to keep inserts cheap.
    """CREATE TABLE IF NOT EXISTS lottery_bets (
        chunk_id bigint NOT NULL DEFAULT currval('lottery_chunk_ids'),
        id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),
        agency int NOT NULL,
        first_name text NOT NULL,
        last_name text NOT NULL,
        document text NOT NULL,
        birthdate text NOT NULL,
        number int NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS lottery_done (
        agency int PRIMARY KEY,
        done_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS lottery_round (
        id int PRIMARY KEY CHECK (id = 1),
        drawn boolean NOT NULL DEFAULT false,
        winning_number int,
        bets bigint,
        winners jsonb,
        drawn_at timestamptz
    )""",
    "INSERT INTO lottery_round (id) VALUES (1) ON CONFLICT DO NOTHING",
]

# Version 1 -> 2: each upload chunk keeps the digest of its body (so a rerun can prove its file
# still holds the stored lines; NULL for chunks stored before), and the round records its
# parameters when it starts (filled by pin_round; winning_number was only set by the draw).
SCHEMA_V2 = [
    "ALTER TABLE lottery_chunks ADD COLUMN IF NOT EXISTS body_digest text",
    "ALTER TABLE lottery_round ADD COLUMN IF NOT EXISTS agencies int, ADD COLUMN IF NOT EXISTS opened_at timestamptz",
]
# Version 2 -> 3: rounds over time. lottery_round gets a row per round (its id is the round's),
# and every chunk and done row says its round; what version 2 held becomes round 1, in the one
# transaction of the migration (so a crash leaves version 2 or version 3, never half).
# Idempotency keys and upload ranges are unique per round.
SCHEMA_V3 = [
    "ALTER TABLE lottery_round DROP CONSTRAINT IF EXISTS lottery_round_id_check",
    "ALTER TABLE lottery_round ADD COLUMN IF NOT EXISTS random boolean NOT NULL DEFAULT false",
    "ALTER TABLE lottery_chunks ADD COLUMN IF NOT EXISTS round int NOT NULL DEFAULT 1",
    "ALTER TABLE lottery_chunks ALTER COLUMN round DROP DEFAULT",
    "DROP INDEX IF EXISTS lottery_chunks_key",
    """CREATE UNIQUE INDEX lottery_chunks_key
        ON lottery_chunks (round, agency, idempotency_key) WHERE idempotency_key IS NOT NULL""",
    "DROP INDEX IF EXISTS lottery_chunks_upload",
    """CREATE UNIQUE INDEX lottery_chunks_upload
        ON lottery_chunks (round, agency, upload_id, upload_start)
        WHERE upload_id IS NOT NULL AND upload_end > upload_start""",
    "DROP INDEX IF EXISTS lottery_chunks_ranges",
    "CREATE INDEX lottery_chunks_ranges ON lottery_chunks (round, agency, upload_id, upload_start)",
    "ALTER TABLE lottery_done ADD COLUMN IF NOT EXISTS round int NOT NULL DEFAULT 1",
    "ALTER TABLE lottery_done ALTER COLUMN round DROP DEFAULT",
    "ALTER TABLE lottery_done DROP CONSTRAINT IF EXISTS lottery_done_pkey",
    "ALTER TABLE lottery_done ADD PRIMARY KEY (round, agency)",
]
# Version 3 -> 4 (issue 21, agencies by the thousand): counts kept on the round's row instead of
# counted per request, and the draw's result a row per agency instead of one jsonb value that every
# winners request detoasted whole. Filled from what version 3 holds, in the migration's transaction.
SCHEMA_V4 = [
    "ALTER TABLE lottery_round ADD COLUMN IF NOT EXISTS done_count int NOT NULL DEFAULT 0",
    "ALTER TABLE lottery_round ADD COLUMN IF NOT EXISTS winners_count int",
    # Bumped by every insert or delete of a done row. Read by nothing since /status answers
    # done_count instead of the done list (issue 21); kept, as schema 4 was released with it.
    "ALTER TABLE lottery_round ADD COLUMN IF NOT EXISTS done_changes bigint NOT NULL DEFAULT 0",
    "UPDATE lottery_round r SET done_count = (SELECT count(*) FROM lottery_done d WHERE d.round = r.id)",
    # Kept by the database itself, so that every row of lottery_done counts, however it got there
    # (the done's transaction, or an operator's repair): the row and its count commit together.
    """CREATE OR REPLACE FUNCTION lottery_count_done() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE lottery_round SET done_count = done_count + 1, done_changes = done_changes + 1
                WHERE id = NEW.round;
        ELSE
            UPDATE lottery_round SET done_count = done_count - 1, done_changes = done_changes + 1
                WHERE id = OLD.round;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER lottery_done_count AFTER INSERT OR DELETE ON lottery_done
        FOR EACH ROW EXECUTE FUNCTION lottery_count_done()""",
    """CREATE TABLE IF NOT EXISTS lottery_winners (
        round int NOT NULL,
        agency int NOT NULL,
        documents text[] NOT NULL,
        PRIMARY KEY (round, agency)
    )""",
    """INSERT INTO lottery_winners (round, agency, documents)
        SELECT r.id, w.key::int, ARRAY(SELECT d FROM jsonb_array_elements_text(w.value) WITH ORDINALITY AS x(d, n)
                                        ORDER BY n)
        FROM lottery_round r, jsonb_each(r.winners) w
        WHERE r.drawn AND jsonb_typeof(r.winners) = 'object' AND jsonb_array_length(w.value) > 0""",
    """UPDATE lottery_round r SET winners_count = coalesce(
        (SELECT sum(cardinality(w.documents)) FROM lottery_winners w WHERE w.round = r.id), 0) WHERE r.drawn""",
    # The winners now live in lottery_winners; the jsonb copy would only be a second truth.
    "UPDATE lottery_round SET winners = NULL",
]
MIGRATIONS = {
    1: SCHEMA,
    2: SCHEMA_V2,
    3: SCHEMA_V3,
    4: SCHEMA_V4,
    5: pg_log.SCHEMA_V5,
}  # version -> the steps that reach it from the one before

CURRENT = "(SELECT max(id) FROM lottery_round)"
# (round id, its agencies, the current round id) of the round asked (%s: None for the current one).
RESOLVE = f"SELECT r.id, r.agencies, {CURRENT} FROM lottery_round r WHERE r.id = coalesce(%s, {CURRENT})"
# A round's bets: recorded by its draw; counted from its chunks (an index range) while it is open.
# (coalesce evaluates its second argument only when the first is null: a round drawn by version 1 has no bets.)
ROUND_BETS = (
    "coalesce(CASE WHEN r.drawn THEN r.bets END, "
    "(SELECT coalesce(sum(c.count), 0) FROM lottery_chunks c WHERE c.round = r.id))"
)
# One round as the API shows it (RoundInfo), without the WHERE.
ROUND_INFO = (
    f"SELECT r.id, r.agencies, r.winning_number, r.random, r.done_count, {ROUND_BETS}, "
    "CASE WHEN r.drawn THEN r.winners_count END, r.opened_at, r.drawn_at, "
    "r.log_opened, r.log_closed, r.seed, r.log_root FROM lottery_round r"
)

TABLES = (
    "lottery_bets",
    "lottery_chunks",
    "lottery_done",
    "lottery_winners",
    "lottery_round",
    "lottery_schema",
    *pg_log.TABLES,
)


def one(cur: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, or a row known to exist)."""
    row: tuple[Any, ...] | None = cur.fetchone()
    if row is None:
        raise StorageUnavailable("the database returned no row where one always exists; retry shortly")
    return row


def one_more(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """What follows RESOLVE's three columns in a row that _resolved accepted (so not None)."""
    assert row is not None
    return row[3:]


def _quiet(conn: psycopg.Connection[Any]) -> bool:
    """Nothing to read on an idle connection's socket (no message, no end of file): no round trip."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return not poller.poll(0)


def _describe(error: psycopg.Error) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create or migrate the schema; safe when many workers of many hosts start at once.

    Everything runs in one transaction that holds an advisory lock, so the CREATE ... IF
    NOT EXISTS statements of two starting workers never race, and the version row says
    which migrations are in. A database of a newer version is refused, never downgraded.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        cur.execute("SELECT to_regclass('lottery_schema') IS NOT NULL")
        version = 0
        if one(cur)[0]:
            cur.execute("SELECT version FROM lottery_schema WHERE id = 1")
            row = cur.fetchone()
            version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise StorageUnavailable(
                f"the database has schema version {version}; this server knows up to "
                f"{SCHEMA_VERSION}: upgrade the server"
            )
        if version == SCHEMA_VERSION:
            return
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                cur.execute(statement)
        cur.execute(
            "INSERT INTO lottery_schema (id, version) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )
        log.info("action: esquema | result: success | version: %d", SCHEMA_VERSION)


def pin_round(
    conn: psycopg.Connection, settings: RoundParameters, translog: TransactionalLog | None = None
) -> RoundParameters:
    """The round's parameters: recorded now from ``settings`` if the round has none yet (a new
    round, or a database of a release that did not record them), else the recorded ones. Round 1
    recorded now opens the log (its round-opened leaf), in the same transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE lottery_round SET agencies = %s, winning_number = coalesce(winning_number, %s), "
            "opened_at = now() WHERE id = 1 AND agencies IS NULL",
            (settings.agencies, settings.winning_number),
        )
        pinned = cur.rowcount == 1
        cur.execute("SELECT agencies, winning_number FROM lottery_round WHERE id = 1")
        recorded = RoundParameters(*one(cur))
        if pinned and translog is not None:
            opened = open_in_log(conn, translog, 1, recorded)
            cur.execute("UPDATE lottery_round SET log_opened = %s, seed = %s WHERE id = 1", opened)
    if pinned:
        log.info(
            "action: ronda_registrada | result: success | agencias: %d | numero_ganador: %d",
            recorded.agencies,
            recorded.winning_number,
        )
    return recorded


def open_in_log(
    conn: psycopg.Connection, log: TransactionalLog, round_id: int, params: RoundParameters
) -> tuple[int, bytes | None]:
    """In the round's opening transaction: its round-opened leaf appended (with a new secret seed's
    commitment for a random round), and its checkpoint; (the leaf's index, the seed)."""
    seed = committed_draw.new_seed() if params.random else None
    commitment = None if seed is None else committed_draw.seed_commitment(seed)
    leaf = leaves.RoundOpened(round_id, params.agencies, params.winning_number, commitment)
    return pg_log.append(conn, log, [leaf.bytes()]).start, seed


def recorded_round(url: str) -> RoundParameters | None:
    """The parameters recorded for the current round in the database; None when none (or unreachable)."""
    try:  # a short timeout: the gunicorn master asks this once before starting, and must not hang
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            if one(conn.execute("SELECT to_regclass('lottery_round') IS NULL"))[0]:
                return None
            row = conn.execute("SELECT to_jsonb(r) FROM lottery_round r ORDER BY id DESC LIMIT 1").fetchone()
    except psycopg.Error:
        return None
    fields = row[0] if row else {}
    if fields.get("agencies") is None or (fields.get("winning_number") is None and not fields.get("random")):
        return None  # not recorded yet: the first worker records the settings
    return RoundParameters(fields["agencies"], fields["winning_number"])


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat(timespec="seconds")


class PooledConnection(psycopg.Connection[Any]):
    answered_at = 0.0  # time.monotonic() when its last use ended without an error (PING_AFTER)


def _chunk_ticket(chunk: Chunk, round: int | None) -> ChunkTicket:
    """A chunk's ticket, with the round its request named (pg_chunks reads the current round in
    the batch's transaction)."""
    # Ticket, not the ChunkTicket alias: a subscripted generic called costs typing's alias call per chunk.
    return Ticket(chunk, round)


class PostgresStore(flow.RoundFlow):
    winners_poll_interval = 0.1  # a query per long-polling request: ten a second is plenty

    def __init__(
        self,
        database_url: str,
        agencies: int,
        winning_number: int,
        lock_timeout: float = 30.0,
        *,
        log_signer: note.Signer | None = None,
        log_origin: str = "lottery.local/log",
    ):
        self.url = database_url
        # The service's transparency log, in the database, signed with this host's copy of the
        # log's key (every host the same: pg_log.register_key). None: a store kept without one.
        self.log: TransactionalLog | None = (
            None
            if log_signer is None
            else TransactionalLog(pg_log.PgLogStorage(self._connection), log_signer, log_origin)
        )
        self.settings = RoundParameters(agencies, winning_number)  # for a round that starts now
        # The current round as last seen (id, agencies), and every round's agencies (never change).
        self._current: tuple[int, int] = (0, agencies)
        self._agencies_of: dict[int, int] = {}
        self.lock_timeout = lock_timeout
        self._pool: ConnectionPool | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self._schema_ready = False
        self._unreachable: str | None = None  # why the pool's last connection attempt failed
        self._generation = 0
        self._watchdog = Watchdog(self._drop_pool)  # cuts connections to a database host that hangs
        # Dones of this process queued for the next group commit, per round asked (None: current).
        self._done_lock, self._done_guard = threading.Lock(), threading.Lock()
        self._done_queues: dict[int | None, list[DoneTicket]] = {}
        # Chunks (app/store/pg_chunks.py): one thread of this process commits them, a batch at a
        # time, handed over by the event loop without a thread-pool hop (app/store/batch.py).
        self._committer: Committer[Chunk, ChunkReceipt] = Committer(self._commit_batch, lock_timeout, "pg-commit")
        try:
            self._ensure_schema()
        except StorageUnavailable as error:
            # The database may come up after the server (compose, a restart): keep serving
            # 503 and create the schema on the first request that reaches it.
            log.warning("action: esquema | result: fail | error: %s", error)

    # -- connections --------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        timeout_ms = int(self.lock_timeout * 1000)
        statement_ms = int((self.lock_timeout + STATEMENT_MARGIN) * 1000)
        return {
            "autocommit": True,  # every write below is an explicit transaction block
            "connect_timeout": CONNECT_TIMEOUT,
            **KEEPALIVES,  # a host lost from the network is noticed, even mid-query
            "application_name": f"lottery-{os.getpid()}",
            # A lock not granted in time (another host's draw, a busy upload) gives 503; so does
            # a statement that runs past the lock timeout and more (a server that crawls).
            "options": f"-c lock_timeout={timeout_ms} -c statement_timeout={statement_ms} -c client_encoding=UTF8",
        }

    def _new_pool(self) -> ConnectionPool:
        """A pool whose connection attempts tell this store whether the database answers."""
        store = self
        generation = self._generation = self._generation + 1

        class TrackedConnection(PooledConnection):
            @classmethod
            def connect(cls, *args: Any, **kwargs: Any) -> TrackedConnection:
                try:
                    conn = super().connect(*args, **kwargs)
                except psycopg.OperationalError as error:
                    if generation == store._generation:  # not a late attempt of a replaced pool
                        store._unreachable = _describe(error)
                    raise
                if generation == store._generation:
                    store._unreachable = None
                return conn

        return ConnectionPool(
            self.url,
            connection_class=TrackedConnection,
            kwargs=self._connect_kwargs(),
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=self.lock_timeout,
            check=self._check,  # a connection the database dropped, or whose host hangs, is replaced, not used
            name=f"lottery-{os.getpid()}-{generation}",
            open=True,
        )

    def _get_pool(self) -> ConnectionPool:
        # One pool per process: a pool opened before a fork (gunicorn --preload) is not reused.
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = self._new_pool()
                self._pool_pid = os.getpid()
            return self._pool

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        if isinstance(conn, PooledConnection) and time.monotonic() - conn.answered_at < PING_AFTER and _quiet(conn):
            return  # it just answered and nothing came since: the ping would only cost a round trip
        with self._watchdog.watch(conn, CHECK_DEADLINE):
            ConnectionPool.check_connection(conn)

    def _drop_pool(self) -> None:
        """A fresh pool on next use: the old one's connections go to a host that hangs or was
        lost, and its reconnection may be deep in back-off. Requests waiting on it get 503."""
        with self._pool_lock:
            old, self._pool = self._pool, None
        if old is not None and self._pool_pid == os.getpid():
            old.close(timeout=0)

    def _probe(self) -> None:
        """While the database seems down: one direct attempt, so that a request gets 503 at once
        instead of waiting for the pool; once it answers again, a fresh pool (the old one
        may be deep in its reconnection back-off)."""
        try:
            psycopg.connect(self.url, **self._connect_kwargs()).close()
        except psycopg.Error as error:
            self._unreachable = _describe(error)
            raise StorageUnavailable(f"database unreachable: {self._unreachable}") from None
        with self._pool_lock:
            if self._unreachable is None:
                return  # another thread got there first
            self._unreachable = None
        self._drop_pool()
        log.info("action: base_de_datos | result: success | detail: reachable again")

    def _getconn(self, pool: ConnectionPool, timeout: float) -> psycopg.Connection:
        """Wait up to ``timeout`` for a pooled connection, in short slices, so that a database
        that goes down while we wait is noticed within DOWN_TIMEOUT."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return pool.getconn(timeout=max(0.001, min(DOWN_TIMEOUT, deadline - time.monotonic())))
            except PoolTimeout:
                if self._unreachable is not None:
                    raise StorageUnavailable(f"database unreachable: {self._unreachable}") from None
                if time.monotonic() >= deadline:
                    raise StorageBusy("no database connection was free in time; retry shortly") from None

    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection; database failures become StorageUnavailable / StorageBusy."""
        try:
            if not self._schema_ready:
                self._ensure_schema()
            if self._unreachable is not None:
                self._probe()
            pool = self._get_pool()
            conn = self._getconn(pool, timeout or self.lock_timeout)
            try:
                # Past the lock timeout and twice the margin, its host hangs: the watchdog cuts it.
                with self._watchdog.watch(conn, (timeout or self.lock_timeout) + 2 * STATEMENT_MARGIN), conn:
                    yield conn  # a pooled connection is not closed on exit, only handed back below
                if isinstance(conn, PooledConnection):
                    conn.answered_at = time.monotonic()
            except pg_errors.ReadOnlySqlTransaction:
                conn.close()  # its host was demoted (a failover): reconnect to the writable one
                raise
            finally:
                pool.putconn(conn)  # a broken connection is discarded and replaced by the pool
        except pg_errors.UniqueViolation:
            raise  # append_chunk's business: another host stored the same key meanwhile
        except (
            pg_errors.LockNotAvailable,
            pg_errors.QueryCanceled,
            pg_errors.DeadlockDetected,
            pg_errors.SerializationFailure,
        ) as error:
            raise StorageBusy(f"the database is busy: {_describe(error)}; retry shortly") from None
        except psycopg.Error as error:
            log.warning("action: base_de_datos | result: fail | error: %s", _describe(error))
            raise StorageUnavailable(f"database error: {_describe(error)}") from None

    def _ensure_schema(self) -> None:
        try:
            with psycopg.connect(self.url, **self._connect_kwargs()) as conn:
                ensure_schema(conn)
                if self.log is not None:
                    pg_log.register_key(conn, self.log.origin, self.log.vkey)
                pin_round(conn, self.settings, self.log)
        except psycopg.Error as error:
            raise StorageUnavailable(f"database unreachable: {_describe(error)}") from None
        self._schema_ready = True

    def close(self) -> None:
        self._committer.stop()  # what it was handed is committed first
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None

    # -- chunks --------------------------------------------------------------------------

    def append_chunk(self, chunk: Chunk, round: int | None = None) -> ChunkReceipt:
        """Group commit (app/store/pg_chunks.py): the chunks this process has queued for one round
        are locked, decided one by one and stored in one transaction, so they share one commit
        (one WAL flush) and a handful of round trips instead of each paying for its own."""
        return self._committer.wait(_chunk_ticket(chunk, round))

    async def store_chunk(self, chunk: Chunk, round: int | None = None) -> ChunkReceipt:
        return await self._committer.submit(_chunk_ticket(chunk, round))

    def _commit_batch(self, tickets: list[ChunkTicket]) -> None:
        """The committer's turn: the batch's chunks by the round their requests named (None: the
        current one), a transaction (or more: _commit_chunks) per round."""
        by_round: dict[int | None, list[ChunkTicket]] = {}
        for ticket in tickets:
            by_round.setdefault(ticket.round, []).append(ticket)
        for round, group in by_round.items():
            try:
                self._commit_chunks(round, group)
            except Exception as error:  # this round's chunks fail; another round's may commit
                fail_unsettled(group, error)

    def _commit_chunks(self, round: int | None, tickets: list[ChunkTicket]) -> None:
        """A transaction per pass: the chunks a pass leaves (their answer rests on a chunk it
        stored) are decided by the next one, after that chunk is committed."""
        pending = tickets
        try:
            while pending:
                answers, pending = self._chunk_pass(round, pending)
                for ticket, answer in answers:  # committed
                    ticket.settle(answer)
        except RoundError as error:  # the round they name is refused: the same answer for each
            for ticket in pending:
                ticket.settle(error)

    def _chunk_pass(
        self, round: int | None, tickets: list[ChunkTicket]
    ) -> tuple[list[tuple[ChunkTicket, pg_chunks.Answer]], list[ChunkTicket]]:
        for _ in range(UNIQUE_RETRIES):
            try:
                return self._chunk_txn(round, tickets)
            except pg_errors.UniqueViolation:
                # Another host committed one of these keys (or ranges) while this batch inserted:
                # the whole batch again, and the replay check answers that chunk from its record.
                continue
        raise StorageBusy("the chunks kept colliding with concurrent writes; retry shortly")

    def _chunk_txn(
        self, round: int | None, tickets: list[ChunkTicket]
    ) -> tuple[list[tuple[ChunkTicket, pg_chunks.Answer]], list[ChunkTicket]]:
        def resolve(conn: psycopg.Connection[Any]) -> Callable[[], tuple[int, int, int]]:
            cur = conn.execute(RESOLVE, (round,))
            return lambda: self._resolved(cur, round, cur.fetchone(), writing=True)

        log = self.log
        if log is not None and log.known() == 0:
            log.root(log.size())  # a new process: its tree read in bounded steps, not in the batch
        with self._connection() as conn:
            return pg_chunks.store_batch(conn, tickets, self._seen(round), resolve, named=round is not None, log=log)

    def _seen(self, round: int | None) -> tuple[int, int] | None:
        """``(round id, its agencies)`` as this process saw them last: the current round's, or the one named."""
        if round is None:
            return self._current if self._current[0] else None
        agencies = self._agencies_of.get(round)
        return None if agencies is None else (round, agencies)

    def _resolve(self, cur: psycopg.Cursor, round: int | None, *, writing: bool) -> tuple[int, int, int]:
        """``(round id, its agencies, the current round id)``. An id past the current round is
        RoundNotCurrent for a write (bets go to the current one) and RoundNotFound for a read."""
        return self._resolved(cur, round, cur.execute(RESOLVE, (round,)).fetchone(), writing=writing)

    def _resolved(
        self, cur: psycopg.Cursor, round: int | None, row: tuple[Any, ...] | None, *, writing: bool
    ) -> tuple[int, int, int]:
        """_resolve, from RESOLVE's row."""
        if row is None:
            cur.execute(f"SELECT {CURRENT}")
            current = one(cur)[0] or 1
            flow.target_round(round, current, writing=writing)  # a later round is refused naming the current one
            raise RoundNotFound(f"round {round} does not exist: the current round is {current}")
        round_id, agencies, current = row
        self._remember(current, agencies if round_id == current else None)
        self._agencies_of[round_id] = agencies
        return round_id, agencies, current

    def _remember(self, current: int, agencies: int | None) -> None:
        if agencies is not None:
            self._current = (current, agencies)
        elif self._current[0] != current:
            self._current = (current, self._current[1])

    # -- the flow's primitives (app/store/flow.py) ---------------------------------------------

    @contextmanager
    def locked_round(
        self, round: int | None, *, writing: bool, done_locks: tuple[int, ...] = ()
    ) -> Iterator[_PostgresTxn]:
        """The round's row locked. The done locks of the agencies ``done_locks`` are taken first: their
        chunks in flight finish before, not while the round's row is held (every done waits on it)."""
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            round_id, count, _ = self._resolve(cur, round, writing=writing)
            # Waits for these agencies' chunks in flight; later chunks will see the done rows.
            # (Only the round's agencies: the flow refuses any other id.)
            # In the order given, pipelined: one round trip for the batch's locks.
            cur.executemany(
                "SELECT pg_advisory_xact_lock(%s)", [(AGENCY_LOCK_BASE + a,) for a in done_locks if 1 <= a <= count]
            )
            # The round's row, locked: one draw, and every done committed before it is seen.
            cur.execute(
                "SELECT drawn, agencies, winning_number, random, done_count, seed FROM lottery_round "
                "WHERE id = %s FOR UPDATE",
                (round_id,),
            )
            drawn, agencies, recorded, random, done, seed = one(cur)
            txn = _PostgresTxn(cur, round_id, RoundParameters(agencies, None if random else recorded), drawn, done)
            txn.log, txn.seed = self.log, seed
            yield txn

    def mark_done(self, agency: int, round: int | None = None) -> DoneReceipt:
        """The flow's mark_done, in groups: the dones this process has queued for one round go
        through flow.record_done one by one in one transaction, so they share one commit (one
        WAL flush) instead of each holding the round's row through its own."""
        queue = self._done_queues.setdefault(round, [])
        outcome = group_commit(
            DoneTicket(agency),
            queue,
            self._done_guard,
            self._done_turn,
            lambda tickets: self._commit_dones(round, tickets),
        )
        return flow.finish_done(*outcome)

    def _done_turn(self, ticket: DoneTicket, queue: list[DoneTicket]) -> AbstractContextManager[None]:
        return turn(self._done_lock, self._done_guard, self.lock_timeout, ticket, queue)

    def _commit_dones(self, round: int | None, tickets: list[DoneTicket]) -> None:
        decided: list[tuple[DoneTicket, flow.DoneOutcome]] = []
        agencies = tuple(sorted({ticket.item for ticket in tickets}))  # locked in order: batches never deadlock
        try:
            with self.locked_round(round, writing=True, done_locks=agencies) as txn:
                txn.insert_dones(agencies)
                for ticket in tickets:
                    try:
                        decided.append((ticket, flow.record_done(txn, ticket.item)))
                    except (StoreError, RoundError) as error:
                        ticket.settle(error)
        except RoundError as error:  # the round they name is refused: the same answer for each
            for ticket in tickets:
                ticket.settle(error)
            return
        for ticket, outcome in decided:  # committed
            ticket.settle(outcome)

    def published(self, round: int | None, agency: int) -> flow.Published:
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute(
                f"SELECT r.id, r.agencies, {CURRENT}, r.drawn, r.done_count, "
                "(SELECT w.documents FROM lottery_winners w WHERE w.round = r.id AND w.agency = %s) "
                f"FROM lottery_round r WHERE r.id = coalesce(%s, {CURRENT})",  # RESOLVE's row, and the rest
                (agency, round),
            ).fetchone()
            round_id, agencies, _ = self._resolved(cur, round, row and row[:3], writing=False)
            drawn, done, mine = one_more(row)
        return flow.Published(round_id, agencies, list(mine or []) if drawn else None, lambda: int(done))

    def read_status(self, round: int | None) -> RoundStatus:
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute(
                f"SELECT r.id, r.agencies, {CURRENT}, r.drawn, r.done_count, {ROUND_BETS} "
                f"FROM lottery_round r WHERE r.id = coalesce(%s, {CURRENT})",  # RESOLVE's row, and the rest
                (round,),
            ).fetchone()
            round_id, agencies, _ = self._resolved(cur, round, row and row[:3], writing=False)
            drawn, done, bets = one_more(row)
        return RoundStatus(agencies, int(done), drawn, int(bets), round_id)

    def _round_info(self, row: tuple[Any, ...]) -> RoundInfo:
        round_id, agencies, number, random, done_count, bets, winners, opened_at, drawn_at, *logged = row
        return RoundInfo(
            round_id,
            agencies,
            number,
            random,
            int(done_count),
            int(bets),
            None if winners is None else int(winners),
            _iso(opened_at),
            _iso(drawn_at),
            None if self.log is None else _round_log(*logged),
        )

    def recorded(self, round: int | None) -> RoundParameters:
        info = self.round_info(round)
        return RoundParameters(info.agencies, None if info.random else info.winning_number)

    def upload_state(self, agency: int, upload_id: str, round: int | None = None) -> UploadState:
        with self._connection() as conn, conn.cursor() as cur:
            round_id = self._resolve(cur, round, writing=False)[0]
            rows = cur.execute(
                "SELECT upload_start, upload_end, body_digest, log_index, salt FROM lottery_chunks "
                "WHERE round = %s AND agency = %s AND upload_id = %s ORDER BY upload_start",
                (round_id, agency, upload_id),
            ).fetchall()
        spans = (
            StoredSpan(start, end, digest, index, None if salt is None else b64.encode(bytes(salt)))
            for start, end, digest, index, salt in rows
        )
        return UploadState(upload_id, tuple(spans))

    def uploads(self, agency: int, round: int | None = None) -> list[UploadSummary]:
        with self._connection() as conn, conn.cursor() as cur:
            round_id = self._resolve(cur, round, writing=False)[0]
            rows = cur.execute(
                "SELECT upload_id, sum(count), count(*) FROM lottery_chunks "
                "WHERE round = %s AND agency = %s AND upload_id IS NOT NULL GROUP BY upload_id ORDER BY min(id)",
                (round_id, agency),
            ).fetchall()
        return [UploadSummary(upload_id, int(bets), chunks) for upload_id, bets, chunks in rows]

    # -- rounds -----------------------------------------------------------------------------

    def known_agencies(self, round_id: int | None) -> int | None:
        if round_id is None:
            return self._current[1] if self._current[0] else None
        return self._agencies_of.get(round_id)

    def round_agencies(self, round_id: int | None = None, fresh: bool = False) -> int:
        """A round's agencies; for the current round, as last seen unless ``fresh`` (rounds never change theirs)."""
        if round_id is None and not fresh and self._current[0]:
            return self._current[1]
        if round_id is not None and round_id in self._agencies_of:
            return self._agencies_of[round_id]
        with self._connection() as conn, conn.cursor() as cur:
            return self._resolve(cur, round_id, writing=False)[1]

    def current_round(self) -> int:
        with self._connection() as conn:
            return int(one(conn.execute(f"SELECT {CURRENT}"))[0])

    def round_info(self, round: int | None = None) -> RoundInfo:
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute(f"{ROUND_INFO} WHERE r.id = coalesce(%s, {CURRENT})", (round,)).fetchone()
            if row is not None:
                return self._round_info(row)
        raise RoundNotFound(f"round {round} does not exist: the current round is {self.current_round()}")

    def done_agencies(self, after: int, limit: int, round: int | None = None) -> list[int]:
        """A range of lottery_done's primary key (round, agency): ``limit`` rows of the index."""
        with self._connection() as conn, conn.cursor() as cur:
            round_id = self._resolve(cur, round, writing=False)[0]
            rows = cur.execute(
                "SELECT agency FROM lottery_done WHERE round = %s AND agency > %s ORDER BY agency LIMIT %s",
                (round_id, after, limit),
            ).fetchall()
        return [row[0] for row in rows]

    def rounds(self, limit: int = 20, before: int | None = None) -> list[RoundInfo]:
        with self._connection() as conn, conn.cursor() as cur:
            rows = cur.execute(
                f"{ROUND_INFO} WHERE %s::int IS NULL OR r.id < %s ORDER BY r.id DESC LIMIT %s", (before, before, limit)
            ).fetchall()
            return [self._round_info(row) for row in rows]

    def create_round(self, params: RoundParameters) -> int:
        with self._connection() as conn:
            with conn.transaction(), conn.cursor() as cur:
                # One opening at a time, on every host; the statements after the lock see the last one's round.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (ROUNDS_LOCK,))
                current, drawn = one(cur.execute("SELECT id, drawn FROM lottery_round ORDER BY id DESC LIMIT 1"))
                rules.refuse_next_round(current, drawn)
                # Its opening leaf (after the drawn round's close), committed with its row.
                opened = (None, None) if self.log is None else open_in_log(conn, self.log, current + 1, params)
                cur.execute(
                    "INSERT INTO lottery_round (id, agencies, winning_number, random, opened_at, log_opened, seed) "
                    "VALUES (%s, %s, %s, %s, now(), %s, %s)",
                    (current + 1, params.agencies, params.winning_number, params.random, *opened),
                )
        new = int(current) + 1
        self._current = (new, params.agencies)
        return new

    def export_bets(self, out: BinaryIO, round: int | None = None) -> tuple[int, int]:
        with self._connection() as conn:
            with conn.cursor() as cur:
                round_id = self._resolve(cur, round, writing=False)[0]
            return round_id, export_bets(conn, out, round_id)

    def check_health(self) -> None:
        with self._connection(timeout=min(HEALTH_TIMEOUT, self.lock_timeout)) as conn:
            if one(conn.execute("SELECT pg_is_in_recovery()"))[0]:
                raise StorageUnavailable("the database is a read-only standby: it cannot take writes")

    def agency_stats(self, round: int | None = None) -> RoundStats:
        """Per-agency bets, chunks and last activity from the chunks table (never the bets)."""
        with self._connection() as conn, conn.cursor() as cur:
            round_id, agencies_count, _ = self._resolve(cur, round, writing=False)
            cur.execute(
                "SELECT agency, sum(count), count(*), extract(epoch FROM max(stored_at)) FROM lottery_chunks "
                "WHERE round = %s GROUP BY agency",
                (round_id,),
            )
            agencies = {a: AgencyStats(a, int(bets), chunks, float(last)) for a, bets, chunks, last in cur.fetchall()}
            cur.execute("SELECT agency FROM lottery_done WHERE round = %s ORDER BY agency", (round_id,))
            done = [row[0] for row in cur.fetchall()]
            cur.execute(
                "SELECT extract(epoch FROM r.drawn_at), (SELECT coalesce(jsonb_object_agg(w.agency, "
                "cardinality(w.documents)), '{}') FROM lottery_winners w WHERE w.round = r.id) "
                "FROM lottery_round r WHERE r.id = %s AND r.drawn",
                (round_id,),
            )
            row = cur.fetchone()
        if row is None:
            return RoundStats(agencies_count, done, agencies)
        counts = {int(a): n for a, n in row[1].items()}  # agencies without winners have no row
        winners = {a: counts.get(a, 0) for a in range(1, agencies_count + 1)}
        return RoundStats(agencies_count, done, agencies, float(row[0]), winners)


class _PostgresTxn:
    """The flow's RoundTxn in a transaction that holds the round's row (PostgresStore.locked_round)."""

    def __init__(self, cur: psycopg.Cursor, round_id: int, params: RoundParameters, drawn: bool, done: int):
        # ``done``: the round row's done_count, read with the row locked, so every done committed
        # before is counted, and none can commit until this transaction ends.
        self.cur, self.round_id, self.params, self._drawn, self._done = cur, round_id, params, drawn, done
        self._inserted: set[int] = set()  # done rows insert_dones wrote, not yet taken by add_done
        self.log: TransactionalLog | None = None  # the store's transparency log, if it keeps one
        self.seed: bytes | None = None  # a random round's secret seed, from its opening
        self._closing: flow.LogClose | None = None  # the close leaf appended, committed by save_draw

    def drawn(self) -> bool:
        return self._drawn

    def done_count(self) -> int:
        return self._done

    def insert_dones(self, agencies: tuple[int, ...]) -> None:
        """A batch's done rows in one statement, before the flow takes each (add_done tells which
        were new). Only the round's agencies: the flow refuses any other id."""
        rows = self.cur.execute(
            "INSERT INTO lottery_done (round, agency) SELECT %s, a FROM unnest(%b::int[]) a "
            "ON CONFLICT DO NOTHING RETURNING agency",
            (self.round_id, [a for a in agencies if 1 <= a <= self.params.agencies]),
        ).fetchall()
        self._inserted = {row[0] for row in rows}

    def add_done(self, agency: int) -> bool:
        # The agency's done lock is held (PostgresStore.mark_done took it before the round's row).
        if agency in self._inserted:
            self._inserted.discard(agency)  # the same agency twice in a batch: recorded by the first
        else:
            self.cur.execute(
                "INSERT INTO lottery_done (round, agency) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (self.round_id, agency),
            )
            if self.cur.rowcount != 1:
                return False
        self._done += 1  # as the trigger lottery_done_count did on the round's row
        return True

    def bets(self) -> int:
        self.cur.execute("SELECT coalesce(sum(count), 0) FROM lottery_chunks WHERE round = %s", (self.round_id,))
        return int(one(self.cur)[0])

    def winning_bets(self, number: int) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        self.cur.execute(
            "SELECT b.agency, b.document FROM lottery_bets b JOIN lottery_chunks c ON c.id = b.chunk_id "
            "WHERE c.round = %s AND b.number = %s ORDER BY b.chunk_id, b.id",
            (self.round_id, number),
        )
        for agency, document in self.cur:
            found.setdefault(agency, []).append(document)
        return found

    def close_log(self) -> flow.LogClose | None:
        """The round's close leaf (its chunk leaves, their bets, the last one's index) and its
        checkpoint, in the draw's transaction: the tree it ends, and the seed committed at the opening."""
        if self.log is None:
            return None
        chunks, bets, last = one(
            self.cur.execute(
                "SELECT count(log_index), coalesce(sum(count) FILTER (WHERE log_index IS NOT NULL), 0), "
                "max(log_index) FROM lottery_chunks WHERE round = %s",
                (self.round_id,),
            )
        )
        leaf = leaves.RoundClosed(self.round_id, int(chunks), int(bets), None if last is None else int(last))
        appended = pg_log.append(self.cur.connection, self.log, [leaf.bytes()])
        seed = None if self.seed is None else bytes(self.seed)
        self._closing = flow.LogClose(self.log.origin, appended.size, appended.root, seed)
        return self._closing

    def save_draw(self, number: int, bets: int, winners: dict[str, list[str]]) -> None:
        # A row per agency with winners (an agency without a row has none): COPY, one round trip.
        with self.cur.copy("COPY lottery_winners (round, agency, documents) FROM STDIN") as copy:
            for agency, documents in winners.items():
                if documents:
                    copy.write_row((self.round_id, int(agency), documents))
        self.cur.execute(
            "UPDATE lottery_round SET drawn = true, winning_number = %s, bets = %s, winners_count = %s, "
            "drawn_at = now(), log_closed = %s, log_root = %s WHERE id = %s",
            (
                number,
                bets,
                sum(len(documents) for documents in winners.values()),
                None if self._closing is None else self._closing.size - 1,
                None if self._closing is None else self._closing.root,
                self.round_id,
            ),
        )
        self._drawn = True


def _round_log(opened: int | None, closed: int | None, seed: bytes | None, root: bytes | None) -> RoundLog:
    """A round's leaves as its row records them; a random round's commitment from its private seed
    (the seed itself only once the draw published it: closed)."""
    draw = None
    if closed is not None and root is not None:
        draw = RoundDraw(None if seed is None else bytes(seed), int(closed) + 1, bytes(root))
    commitment = None if seed is None else committed_draw.seed_commitment(bytes(seed))
    return RoundLog(opened, closed, commitment, draw)


def export_bets(conn: psycopg.Connection, out: BinaryIO, round: int | None = None) -> int:
    """One round's bets (the current one by default) in the course's bets.csv format (COPY's csv
    output is the csv module's, for every valid bet), in stored order: chunk by chunk, each
    chunk's rows in their order."""
    bets = 0
    query = (
        f"SELECT {', '.join('b.' + c for c in BET_COLUMNS.split(', '))} FROM lottery_bets b "
        "JOIN lottery_chunks c ON c.id = b.chunk_id "
        f"WHERE c.round = coalesce({round if round is not None else 'NULL'}, {CURRENT}) ORDER BY b.chunk_id, b.id"
    )
    with (
        conn.transaction(),
        conn.cursor() as cur,
        cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy,
    ):
        for block in copy:
            out.write(block)
            bets += bytes(block).count(b"\n")  # no field may hold a newline: one line, one bet
    return bets
