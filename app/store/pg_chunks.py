"""A batch of chunks in one PostgreSQL transaction: PostgresStore.append_chunk's group commit.

The chunks a worker process has queued at once are locked, decided and written together, and
committed once (one WAL flush) instead of each in a transaction of its own, in three round
trips and a COPY:

    BEGIN, the round's row, the locks (in order), what decides the chunks, chunk ids   a pipeline
    every chunk decided on its own, by flow.decide_chunk (replay, refusal, or store it)
    the stored chunks' bets                                                             one COPY
    their rows, COMMIT                                                                  a pipeline

The first pipeline locks and reads for the round this process saw last (rounds change rarely);
when the round's row says otherwise (another round was opened meanwhile), a second pipeline
locks and reads for that one, in the same transaction.

Each chunk keeps its own all-or-nothing answer: a refused chunk writes nothing and the others
are stored. A chunk whose answer rests on another chunk of the same batch (the same
Idempotency-Key, or a range that meets one of the same upload) is not decided here: it goes
to the next batch, decided against the database once the first is committed. The locks keep
their meaning (app/store/postgres.py): the batch holds each upload's lock and each agency's
shared lock until it commits, taken in one order (uploads, then agencies, each sorted) so
that batches of several processes and hosts never wait on each other in a cycle.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from app.rounds import RoundError
from app.store import flow
from app.store.base import (
    Chunk,
    ChunkReceipt,
    StoreError,
    merge_ranges,
    replay_by_key,
    replay_by_range,
)
from app.store.batch import Ticket

ChunkTicket = Ticket[Chunk, ChunkReceipt]
Answer = ChunkReceipt | StoreError | RoundError

AGENCY_LOCK_BASE = 0x4C4F5454_10000000  # + agency id: chunks (shared) vs done (exclusive)
BET_COLUMNS = "agency, first_name, last_name, document, birthdate, number"

UPLOAD_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"
AGENCY_LOCK = "SELECT pg_advisory_xact_lock_shared(%s)"
# The stored (fingerprint, count) of the batch's keys: one lottery_chunks_key index probe each.
STORED_KEYS = (
    "SELECT k.i, c.fingerprint, c.count FROM unnest(%s::int[], %s::int[], %s::text[]) AS k(i, agency, key) "
    "JOIN lottery_chunks c ON c.round = %s::int AND c.agency = k.agency AND c.idempotency_key = k.key "
    "WHERE c.idempotency_key IS NOT NULL"
)
# For each chunk of an upload, the one stored span that can decide it: stored ranges of an upload
# never overlap and are never empty, so the only one that can equal or overlap [start, stop) is
# the last to start before stop: one backward step of the lottery_chunks_ranges index per chunk,
# however many chunks the upload has.
NEIGHBOUR_SPANS = (
    "SELECT k.i, s.upload_start, s.upload_end, s.fingerprint "
    "FROM unnest(%s::int[], %s::int[], %s::text[], %s::bigint[]) AS k(i, agency, upload_id, stop) "
    "CROSS JOIN LATERAL (SELECT c.upload_start, c.upload_end, c.fingerprint FROM lottery_chunks c "
    "WHERE c.round = %s::int AND c.agency = k.agency AND c.upload_id = k.upload_id AND c.upload_start < k.stop "
    "ORDER BY c.upload_start DESC LIMIT 1) s"
)
# Read with the agencies' shared locks held: a done committed before is seen; none commits until this ends.
CLOSED = (
    "SELECT r.drawn, ARRAY(SELECT d.agency FROM lottery_done d WHERE d.round = r.id AND d.agency = ANY(%s::int[])) "
    "FROM lottery_round r WHERE r.id = %s::int"
)
NEW_IDS = "SELECT nextval('lottery_chunk_ids') FROM generate_series(1, %s)"
INSERT_CHUNKS = (
    "INSERT INTO lottery_chunks (id, round, agency, idempotency_key, fingerprint, count, upload_id, "
    "upload_start, upload_end, body_digest) "
    "SELECT k.id, %s::int, k.agency, k.key, k.fingerprint, k.count, k.upload_id, k.upload_start, k.upload_end, "
    "k.digest "
    "FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::int[], %s::text[], %s::bigint[], "
    "%s::bigint[], %s::text[]) AS k(id, agency, key, fingerprint, count, upload_id, upload_start, upload_end, digest)"
)
# Each line prefixed with its chunk's id (_tagged): one COPY for every chunk of the batch.
COPY_BETS = f"COPY lottery_bets (chunk_id, {BET_COLUMNS}) FROM STDIN WITH (FORMAT csv)"


def upload_lock_key(upload_id: str) -> int:
    """A signed 32-bit hash of the upload id (a collision only makes two uploads take turns)."""
    return zlib.crc32(upload_id.encode()) - 2**31


@dataclass(frozen=True, slots=True)
class Found:
    """What the database holds that decides the batch's chunks, read under their locks."""

    drawn: bool
    done: frozenset[int]  # the batch's agencies that said done
    keys: dict[int, tuple[str, int]]  # chunk's place in the batch -> its key's stored (fingerprint, count)
    spans: dict[int, tuple[int, int, str]]  # chunk's place -> its upload's neighbouring stored span
    ids: list[int]  # fresh chunk ids, ascending: as many as chunks


Round = tuple[int, int, int]  # (round id, its agencies, the current round id)


def store_batch(
    conn: psycopg.Connection[Any],
    tickets: Sequence[ChunkTicket],
    assumed: tuple[int, int] | None,
    resolve: Callable[[psycopg.Connection[Any]], Callable[[], Round]],
    named: bool,
) -> tuple[list[tuple[ChunkTicket, Answer]], list[ChunkTicket]]:
    """One transaction on ``conn`` (an autocommit connection: BEGIN and COMMIT are sent here, with
    other statements): lock, decide and write ``tickets``, for the round ``resolve`` finds (it
    sends the round's query and returns what reads its answer; a refused round raises RoundError).
    ``assumed`` is ``(round id, agencies)`` as last seen, if any; ``named``: the request named
    its round. Returns each decided chunk's answer, committed, and the chunks left for the next batch."""
    chunks = [ticket.item for ticket in tickets]
    # On a failure, the connection's context (PostgresStore._connection) rolls the transaction back.
    with conn.cursor() as cur:
        with conn.pipeline():
            conn.execute("BEGIN")
            round_of = resolve(conn)
            reading = _lock_and_read(conn, cur, *assumed, chunks) if assumed is not None else None
        round_id, agencies, current = round_of()
        if reading is None or assumed != (round_id, agencies):
            with conn.pipeline():
                reading = _lock_and_read(conn, cur, round_id, agencies, chunks)
        found = reading()
        answers, stored, deferred = _decide(
            cur, tickets, found, round_id, agencies, (round_id, lambda: current) if named else None
        )
        chunks = [ticket.item for ticket in stored]
        ids = found.ids[: len(chunks)]
        if chunks:
            with cur.copy(COPY_BETS) as copy:
                # The payloads are already the stored CSV format, which COPY's csv mode reads as is.
                copy.write(b"".join(_tagged(c.payload, chunk_id) for c, chunk_id in zip(chunks, ids, strict=True)))
        with conn.pipeline():
            if chunks:
                cur.execute(INSERT_CHUNKS, _chunk_rows(round_id, chunks, ids))
            conn.execute("COMMIT")
    answers.extend((ticket, ChunkReceipt(ticket.item.agency, ticket.item.count)) for ticket in stored)
    return answers, deferred


def _decide(
    cur: psycopg.Cursor[Any],
    tickets: Sequence[ChunkTicket],
    found: Found,
    round_id: int,
    agencies: int,
    named: tuple[int, Callable[[], int]] | None,
) -> tuple[list[tuple[ChunkTicket, Answer]], list[ChunkTicket], list[ChunkTicket]]:
    """Each chunk on its own: its answer (a replay or a refusal), or to store; or left for the next batch."""
    answers: list[tuple[ChunkTicket, Answer]] = []
    stored: list[ChunkTicket] = []
    deferred: list[ChunkTicket] = []
    keys: set[tuple[int, str]] = set()  # of the chunks stored by this batch
    ranges: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for i, ticket in enumerate(tickets):
        chunk = ticket.item
        if _meets(chunk, keys, ranges):
            deferred.append(ticket)  # its answer rests on a chunk of this batch: decided after it commits
            continue
        outcome: Answer | None
        try:
            outcome = flow.decide_chunk(
                chunk,
                agencies,
                lambda: _replay(cur, round_id, chunk, found, i),  # noqa: B023 - called at once
                lambda: (found.drawn, chunk.agency in found.done),  # noqa: B023 - called at once
                named,
            )
        except (StoreError, RoundError) as error:
            outcome = error
        if outcome is not None:
            answers.append((ticket, outcome))
            continue
        stored.append(ticket)
        if chunk.idempotency_key is not None:
            keys.add((chunk.agency, chunk.idempotency_key))
        if chunk.upload is not None:
            start = chunk.upload.offset
            ranges.setdefault((chunk.agency, chunk.upload.upload_id), []).append((start, start + chunk.count))
    return answers, stored, deferred


def _lock_and_read(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], round_id: int, agencies: int, chunks: list[Chunk]
) -> Callable[[], Found]:
    """Inside a pipeline: the batch's locks, then what decides its chunks (the statements run in
    order on the server: every read sees the database after the locks). Returns what reads
    their answers, once the pipeline is synced."""
    ours = [c for c in chunks if 1 <= c.agency <= agencies]  # the flow refuses any other id, before any lock
    uploads = sorted({(c.agency, upload_lock_key(c.upload.upload_id)) for c in ours if c.upload is not None})
    agency_locks = sorted({AGENCY_LOCK_BASE + c.agency for c in ours})
    keyed = [(i, c) for i, c in enumerate(chunks) if c.idempotency_key is not None]
    spanned = [(i, c, c.upload) for i, c in enumerate(chunks) if c.upload is not None]
    if uploads:
        cur.executemany(UPLOAD_LOCK, uploads)
    if agency_locks:
        cur.executemany(AGENCY_LOCK, [(key,) for key in agency_locks])
    closed = conn.execute(CLOSED, (sorted({c.agency for c in chunks}), round_id))
    stored_keys = (
        conn.execute(
            STORED_KEYS,
            ([i for i, _ in keyed], [c.agency for _, c in keyed], [c.idempotency_key for _, c in keyed], round_id),
        )
        if keyed
        else None
    )
    spans = (
        conn.execute(
            NEIGHBOUR_SPANS,
            (
                [i for i, _, _ in spanned],
                [c.agency for _, c, _ in spanned],
                [u.upload_id for _, _, u in spanned],
                [u.offset + c.count for _, c, u in spanned],
                round_id,
            ),
        )
        if spanned
        else None
    )
    ids = conn.execute(NEW_IDS, (len(chunks),))

    def found() -> Found:
        row = closed.fetchone()
        drawn, done = (bool(row[0]), frozenset(row[1])) if row is not None else (False, frozenset[int]())
        return Found(
            drawn,
            done,
            {i: (fingerprint, count) for i, fingerprint, count in stored_keys} if stored_keys else {},
            {i: (start, end, fingerprint) for i, start, end, fingerprint in spans} if spans else {},
            sorted(row[0] for row in ids),
        )

    return found


def _meets(chunk: Chunk, keys: set[tuple[int, str]], ranges: dict[tuple[int, str], list[tuple[int, int]]]) -> bool:
    """Whether the chunk's answer depends on a chunk this batch stores: its key, or its range
    (the same, or overlapping) in the same upload."""
    if chunk.idempotency_key is not None and (chunk.agency, chunk.idempotency_key) in keys:
        return True
    if chunk.upload is not None:
        start, end = chunk.upload.offset, chunk.upload.offset + chunk.count
        for s, e in ranges.get((chunk.agency, chunk.upload.upload_id), ()):
            if (s, e) == (start, end) or (s < end and start < e):
                return True
    return False


def _replay(cur: psycopg.Cursor[Any], round_id: int, chunk: Chunk, found: Found, i: int) -> ChunkReceipt | None:
    """Answer a retry from what is stored; raise if it does not match (as the file backend's _replay)."""
    if chunk.idempotency_key is not None:
        replay = replay_by_key(chunk, found.keys.get(i))
        if replay is not None:
            return replay
    if chunk.upload is not None:
        span = found.spans.get(i)
        upload_id = chunk.upload.upload_id
        return replay_by_range(
            chunk, [span] if span else [], lambda: _committed(cur, round_id, chunk.agency, upload_id)
        )
    return None


def _committed(cur: psycopg.Cursor[Any], round_id: int, agency: int, upload_id: str) -> list[tuple[int, int]]:
    """An upload's stored ranges, merged (a RangeConflict lists them)."""
    cur.execute(
        "SELECT upload_start, upload_end FROM lottery_chunks WHERE round = %s AND agency = %s AND upload_id = %s",
        (round_id, agency, upload_id),
    )
    return merge_ranges([(s, e) for s, e in cur.fetchall()])


def _chunk_rows(round_id: int, chunks: list[Chunk], ids: list[int]) -> tuple[Any, ...]:
    """INSERT_CHUNKS's parameters: a column each."""
    uploads = [c.upload for c in chunks]
    return (
        round_id,
        ids,
        [c.agency for c in chunks],
        [c.idempotency_key for c in chunks],
        [c.fingerprint for c in chunks],
        [c.count for c in chunks],
        [u.upload_id if u else None for u in uploads],
        [u.offset if u else None for u in uploads],
        [u.offset + c.count if u else None for c, u in zip(chunks, uploads, strict=True)],
        [c.digest if u else None for c, u in zip(chunks, uploads, strict=True)],
    )


def _tagged(payload: bytes, chunk_id: int) -> bytes:
    """The payload's lines, each prefixed with ``chunk_id,`` (no field holds a newline: one line, one bet)."""
    if not payload:
        return b""
    prefix = b"%d," % chunk_id
    return prefix + payload[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
