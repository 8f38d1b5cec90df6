"""The transparency log in PostgreSQL (docs/transparency.md, docs/postgres.md "The log").

``lottery_log_leaves``       leaf ``idx`` (0, 1, ...): its bytes.
``lottery_log_checkpoints``  every signed checkpoint, by tree ``size``: the signed note.
``lottery_log_key``          the log's origin and verifier key (public): every host must sign
                             with the same key; one whose key is another refuses to write.

A writer takes the log's lock (``pg_advisory_xact_lock(LOG_LOCK)``) last, in the transaction of
what its leaves record, reads the committed size and the leaves its process's tree lacks,
inserts its leaves from that size and ONE checkpoint of the new size, signed before the commit
with the key on this host's disk (never in the database), and commits: the leaves, their
records and their checkpoint commit together or not at all, so every committed size has its
checkpoint and no two checkpoints disagree (the lock orders every host's writers). Nothing is
ever cut: no recovery.

This module only persists and locks; what a leaf says is the caller's (app/store/pg_chunks.py,
app/store/postgres.py), signing and the tree are the log's (app/store/txlog.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from app.store.base import DataCorrupt, StorageUnavailable
from app.store.txlog import TransactionalLog

LOG_LOCK = 0x4C4F5454_00000003  # "LOTT" | 3: the log's writers, on every host (postgres.py's keys: 1, 2)

# Version 4 -> 5 (issue 23): the log's tables, and what rounds and chunks keep of it.
SCHEMA_V5 = [
    "CREATE TABLE IF NOT EXISTS lottery_log_leaves (idx bigint PRIMARY KEY, leaf bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lottery_log_checkpoints (size bigint PRIMARY KEY, note bytea NOT NULL)",
    """CREATE TABLE IF NOT EXISTS lottery_log_key (
        id int PRIMARY KEY CHECK (id = 1),
        origin text NOT NULL,
        vkey text NOT NULL
    )""",
    # log_opened/log_closed: the round's leaves; seed: a random round's, secret until its draw;
    # log_root: the root of the tree its close leaf ends (the draw's root_N).
    "ALTER TABLE lottery_round ADD COLUMN IF NOT EXISTS log_opened bigint, ADD COLUMN IF NOT EXISTS seed bytea, "
    "ADD COLUMN IF NOT EXISTS log_closed bigint, ADD COLUMN IF NOT EXISTS log_root bytea",
    # The chunk's leaf, its salt (private: never in the log; the agency reads it in its upload's
    # spans), and the leaf's key when the chunk came without an Idempotency-Key.
    "ALTER TABLE lottery_chunks ADD COLUMN IF NOT EXISTS log_index bigint, ADD COLUMN IF NOT EXISTS salt bytea, "
    "ADD COLUMN IF NOT EXISTS auto_key text",
]
TABLES = ("lottery_log_leaves", "lottery_log_checkpoints", "lottery_log_key")

LOCK = "SELECT pg_advisory_xact_lock(%s)"
# Under the lock, in a statement of its own (a statement reads the snapshot taken when it
# starts, so one that also waited for the lock would not see what its holder committed): the
# committed size, twice (the leaves' and the latest checkpoint's: they commit together), and
# the committed leaves from an index on. One statement, not two: each costs a batch ~20 µs of
# client CPU and the server's own (issue 22).
HEAD_SINCE = (
    "SELECT (SELECT coalesce(max(idx) + 1, 0) FROM lottery_log_leaves), "
    "(SELECT coalesce(max(size), 0) FROM lottery_log_checkpoints), "
    "ARRAY(SELECT leaf FROM lottery_log_leaves WHERE idx >= %s ORDER BY idx)"
)
# A writer whose tree may lack much of the log (a process that has not read it for a while)
# reads it before the lock a page at a time: flat memory, and HEAD_SINCE's array under the lock
# stays short (an array value is capped at 1 GB).
CATCH_UP_PAGE = 4096
SINCE_PAGE = "SELECT leaf FROM lottery_log_leaves WHERE idx >= %s ORDER BY idx LIMIT %s"
# The leaves and their checkpoint as two data-modifying WITH items, for the statement that
# inserts the rows the leaves record (pg_chunks.INSERT_CHUNKS): they commit together anyway,
# and one statement is one round of parse, plan and execute instead of three. Parameters:
# append_parameters(...), before the statement's own.
APPEND_ITEMS = (
    "log_leaves AS (INSERT INTO lottery_log_leaves (idx, leaf) "
    "SELECT %s::bigint + n - 1, leaf FROM unnest(%b::bytea[]) WITH ORDINALITY AS t(leaf, n)), "
    "log_checkpoint AS (INSERT INTO lottery_log_checkpoints (size, note) VALUES (%s, %s))"
)
APPEND = "WITH " + APPEND_ITEMS + " SELECT"


@dataclass(frozen=True, slots=True)
class Appended:
    """A writer's leaves, inserted from ``start``, and the checkpoint of ``size`` it signed."""

    start: int
    size: int
    root: bytes
    note: bytes


class PgLogStorage:
    """The log's readers (txlog.LogReader) over the store's pooled connections."""

    def __init__(self, connection: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]):
        self._connection = connection

    def read_leaves(self, start: int, end: int) -> list[bytes]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT leaf FROM lottery_log_leaves WHERE idx >= %s AND idx < %s ORDER BY idx", (start, end)
            ).fetchall()
        if len(rows) != max(0, end - start):
            raise DataCorrupt(f"the log's leaves {start} to {end - 1} are not all in lottery_log_leaves")
        return [bytes(row[0]) for row in rows]

    def read_checkpoints(self) -> tuple[int, bytes] | None:
        with self._connection() as conn:
            row = conn.execute("SELECT size, note FROM lottery_log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def checkpoint(self, size: int) -> bytes | None:
        with self._connection() as conn:
            row = conn.execute("SELECT note FROM lottery_log_checkpoints WHERE size = %s", (size,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        return None  # the store's pool is the store's to close


def send_lock(conn: psycopg.Connection[Any], known: int) -> Callable[[], tuple[int, list[bytes]]]:
    """In the writer's transaction (in a pipeline, or not): the log's lock, then its committed
    size and the committed leaves from ``known`` on. Returns what reads them (once synced)."""
    conn.execute(LOCK, (LOG_LOCK,))
    head = conn.execute(HEAD_SINCE, (known,))

    def read() -> tuple[int, list[bytes]]:
        row = head.fetchone()
        if row is None:
            raise StorageUnavailable("the database returned no row where one always exists; retry shortly")
        size, signed = int(row[0]), int(row[1])
        if size != signed:  # they commit together: a hand's work
            raise DataCorrupt(
                f"the transparency log holds {size} leaves but its latest checkpoint signs {signed}: "
                "rows of lottery_log_leaves or lottery_log_checkpoints were removed"
            )
        return size, [bytes(leaf) for leaf in row[2]]

    return read


def sign(
    log: TransactionalLog, known: int, read: Callable[[], tuple[int, list[bytes]]], found: Sequence[bytes]
) -> Appended:
    """Under the log's lock, once ``send_lock``'s pipeline is synced: the tree fed what was read,
    and ``found`` signed as the next leaves."""
    size, since = read()
    log.feed(known, since)
    root, note = log.sign_next(size, found)
    return Appended(size, size + len(found), root, note)


def append_parameters(appended: Appended, found: Sequence[bytes]) -> tuple[int, list[bytes], int, bytes]:
    """APPEND_ITEMS' parameters: ``found`` inserted from ``appended.start``, and its checkpoint."""
    return appended.start, list(found), appended.size, appended.note


def send_append(conn: psycopg.Connection[Any], appended: Appended, found: Sequence[bytes]) -> None:
    """The leaves and their checkpoint inserted (in a pipeline, or not): committed with the transaction."""
    conn.execute(APPEND, append_parameters(appended, found))


def catch_up(conn: psycopg.Connection[Any], log: TransactionalLog) -> int:
    """The committed leaves this process's tree lacks, fed to it a page at a time (no lock
    taken); how many leaves it holds then."""
    while True:
        known = log.known()
        page = [bytes(row[0]) for row in conn.execute(SINCE_PAGE, (known, CATCH_UP_PAGE)).fetchall()]
        log.feed(known, page)
        if len(page) < CATCH_UP_PAGE:
            return log.known()


def append(conn: psycopg.Connection[Any], log: TransactionalLog, found: Sequence[bytes]) -> Appended:
    """A rare writer's (a round's opening or close): the tree caught up before the lock, then the
    lock, the leaves and their checkpoint, in the caller's transaction, statement by statement."""
    known = catch_up(conn, log)
    appended = sign(log, known, send_lock(conn, known), found)
    send_append(conn, appended, found)
    return appended


def register_key(conn: psycopg.Connection[Any], origin: str, vkey: str) -> None:
    """The log's key, recorded by the first host that writes; any other host's must be the same
    (several hosts sign one log). StorageUnavailable naming both when it is not."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO lottery_log_key (id, origin, vkey) VALUES (1, %s, %s) ON CONFLICT DO NOTHING", (origin, vkey)
        )
        row = conn.execute("SELECT origin, vkey FROM lottery_log_key WHERE id = 1").fetchone()
    if row is not None and (row[0], row[1]) != (origin, vkey):
        raise LogKeyMismatch(
            f"the database's transparency log is signed by {row[1]} (origin {row[0]}), but this host's key is "
            f"{vkey}: every host must use the same key file (LOTTERY_LOG_KEY_FILE) and LOTTERY_LOG_ORIGIN"
        )


class LogKeyMismatch(StorageUnavailable):
    """This host's log key is not the one the database's log is signed with."""
