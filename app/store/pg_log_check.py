"""The start-up check of the PostgreSQL backend's transparency log (gunicorn's master, app/preflight.py).

The server refuses to start, naming what differs, when the log in the database does not match
what was signed or what the current round's rows record:

1. the database's log is signed with this host's key and origin (lottery_log_key);
2. every checkpoint verifies with that key and origin, and its root is the root of the leaves
   at its size (an altered leaf changes it; a removed one leaves a gap or too few); the latest
   signs exactly the leaves there are (leaves and checkpoints commit together);
3. each chunk of the current round is its leaf: same round, agency, key and count, and the
   digest recomputed from its bets in lottery_bets (in stored order: ``chunk_id, id``) with its
   kept salt (an altered or removed bet); every chunk leaf of the round is some chunk row's (a
   removed chunk row).

Nothing to recover: a transaction commits leaves, checkpoint and records together. Costs: every
leaf read and hashed once (as the files backend's check), and the current round's bets read
once, by one COPY in stored order (O(bets of the current round)).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from app.store.log_check import LogMismatch
from app.store.pg_chunks import BET_COLUMNS
from tlog import checkpoint, leaves, merkle, note

READ_BATCH = 10_000  # leaves a query: flat memory however long the log


def check_pg_log(url: str, signer: note.Signer, origin: str) -> int | None:
    """Check the log and the current round against it; the log's size, or None when the database
    cannot be reached (the workers report it). LogMismatch naming what differs."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('lottery_log_leaves') IS NULL").fetchone() == (True,):
                return 0  # a database no server of this release has used yet: nothing signed
            return _check(conn, signer, origin)
    except psycopg.OperationalError:
        return None


def _check(conn: psycopg.Connection[Any], signer: note.Signer, origin: str) -> int:
    verifier = signer.verifier()
    key = conn.execute("SELECT origin, vkey FROM lottery_log_key WHERE id = 1").fetchone()
    if key is not None and (key[0], key[1]) != (origin, verifier.vkey()):
        raise LogMismatch(
            f"the database's log is signed by {key[1]} (origin {key[0]}), but this host's key is {verifier.vkey()}: "
            "every host must use the same key file (LOTTERY_LOG_KEY_FILE) and LOTTERY_LOG_ORIGIN"
        )
    current = _current_round(conn)
    tree = merkle.Tree()
    kept: dict[int, bytes] = {}  # the current round's leaves, from its opening (or first chunk) on
    for index, leaf in _leaves(conn):
        if index != len(tree):
            raise LogMismatch(f"the log has no leaf {len(tree)} (the next is {index}): leaves were removed")
        tree.append(merkle.leaf_hash(leaf))
        if current is not None and index >= current.first:
            kept[index] = leaf
    count = len(tree)
    previous = 0
    for size, signed in conn.execute("SELECT size, note FROM lottery_log_checkpoints ORDER BY size"):
        try:
            head = checkpoint.open_checkpoint(bytes(signed), verifier, origin)
        except (note.NoteError, checkpoint.CheckpointError) as error:
            raise LogMismatch(
                f"the log's checkpoint of size {size} does not verify with the log's key: {error}"
            ) from None
        if head.size != size:
            raise LogMismatch(f"the checkpoint filed under size {size} signs size {head.size}")
        if size > count:
            raise LogMismatch(
                f"the log's checkpoint of size {size} signs leaves the log no longer has: it holds {count} "
                "(leaves were removed)"
            )
        if tree.root(size) != head.root:
            raise LogMismatch(
                f"the leaves in lottery_log_leaves do not match the log's signed checkpoint of size {size}: "
                f"a leaf among {previous} to {size - 1} was altered"
            )
        previous = size
    if previous != count:
        raise LogMismatch(
            f"the log holds {count} leaves but its latest checkpoint signs {previous}: "
            "leaves and their checkpoint commit together (rows of lottery_log_checkpoints were removed?)"
        )
    if current is not None:
        _check_round(conn, current, kept, count)
    return count


def _leaves(conn: psycopg.Connection[Any]) -> Iterator[tuple[int, bytes]]:
    after = -1
    while True:
        rows = conn.execute(
            "SELECT idx, leaf FROM lottery_log_leaves WHERE idx > %s ORDER BY idx LIMIT %s", (after, READ_BATCH)
        ).fetchall()
        for index, leaf in rows:
            yield int(index), bytes(leaf)
        if len(rows) < READ_BATCH:
            return
        after = int(rows[-1][0])


@dataclass(frozen=True, slots=True)
class _Round:
    id: int
    closed: int | None
    first: int  # its first leaf after its opening (for a round opened before the log: its first chunk's)
    chunks: dict[int, tuple[int, int, str, int, bytes]]  # chunk id -> (leaf, agency, leaf key, count, salt)


def _current_round(conn: psycopg.Connection[Any]) -> _Round | None:
    row = conn.execute("SELECT id, log_opened, log_closed FROM lottery_round ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    round_id, opened, closed = row
    chunks = {
        int(chunk_id): (int(index), int(agency), key if key is not None else auto or "", int(n), bytes(salt))
        for chunk_id, agency, key, auto, n, index, salt in conn.execute(
            "SELECT id, agency, idempotency_key, auto_key, count, log_index, salt FROM lottery_chunks "
            "WHERE round = %s AND log_index IS NOT NULL",
            (round_id,),
        )
    }
    first = opened + 1 if opened is not None else min((c[0] for c in chunks.values()), default=2**63)
    return _Round(int(round_id), closed, first, chunks)


def _check_round(conn: psycopg.Connection[Any], current: _Round, kept: dict[int, bytes], count: int) -> None:
    """Each chunk of the current round against its leaf (its bets streamed in stored order), then
    every chunk leaf of the round against the round's chunks."""
    unchecked = dict(current.chunks)
    for chunk_id, rows in _bets_by_chunk(conn, current.id):
        found = unchecked.pop(chunk_id, None)
        if found is not None:
            _check_chunk(current.id, found, rows, kept, count)
    for found in unchecked.values():  # a chunk whose every bet is gone
        _check_chunk(current.id, found, b"", kept, count)
    claimed = {found[0] for found in current.chunks.values()}
    end = current.closed if current.closed is not None else count
    for index in range(current.first, end):
        leaf = leaves.parse_leaf(kept[index])
        if isinstance(leaf, leaves.ChunkStored) and leaf.round == current.id and index not in claimed:
            raise LogMismatch(
                f"round {current.id}, agency {leaf.agency}, chunk {leaf.key} (leaf {index}): its leaf is in the log "
                "but lottery_chunks has no row for it (a chunk was removed)"
            )


def _check_chunk(
    round_id: int, found: tuple[int, int, str, int, bytes], rows: bytes, kept: dict[int, bytes], count: int
) -> None:
    index, agency, key, n, salt = found
    what = f"round {round_id}, agency {agency}, chunk {key} (leaf {index})"
    if index >= count:
        raise LogMismatch(f"{what}: the log has no leaf {index} (it holds {count}): leaves were removed")
    try:
        leaf = leaves.parse_leaf(kept[index])
    except (KeyError, ValueError) as error:
        raise LogMismatch(f"{what}: its leaf is not a chunk's ({error})") from None
    if not (
        isinstance(leaf, leaves.ChunkStored)
        and (leaf.round, leaf.agency, leaf.key, leaf.bets) == (round_id, agency, key, n)
    ):
        raise LogMismatch(f"{what}: its row in lottery_chunks is not the chunk its leaf records")
    if leaf.digest != leaves.chunk_digest(salt, rows):
        raise LogMismatch(
            f"{what}: its bets in lottery_bets differ from its leaf's digest (a bet was altered or removed)"
        )


def _bets_by_chunk(conn: psycopg.Connection[Any], round_id: int) -> Iterator[tuple[int, bytes]]:
    """The round's bets as stored (the course's CSV rows: COPY's csv is the csv module's), a chunk
    at a time, in stored order: one COPY, memory of one chunk."""
    query = (
        f"SELECT b.chunk_id, {', '.join('b.' + c for c in BET_COLUMNS.split(', '))} FROM lottery_bets b "
        f"JOIN lottery_chunks c ON c.id = b.chunk_id WHERE c.round = {int(round_id)} ORDER BY b.chunk_id, b.id"
    )
    chunk: int | None = None
    rows: list[bytes] = []
    rest = b""
    with conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
        for block in copy:
            data = rest + bytes(block)
            cut = data.rfind(b"\n") + 1
            for line in data[:cut].splitlines(keepends=True):
                tag, row = line.split(b",", 1)
                if int(tag) != chunk:
                    if chunk is not None:
                        yield chunk, b"".join(rows)
                    chunk, rows = int(tag), []
                rows.append(row)
            rest = data[cut:]
    if chunk is not None:
        yield chunk, b"".join(rows)
