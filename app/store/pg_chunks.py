"""A batch of chunks in one PostgreSQL transaction: PostgresStore.append_chunk's group commit.

The chunks a worker process has queued at once are locked, decided and written together, and
committed once (one WAL flush) instead of each in a transaction of its own, in three round
trips and a COPY:

    BEGIN, the round's row, the locks (in order), what decides the chunks, chunk ids,
    the log's leaves this process has not read                                          a pipeline
    every chunk decided on its own, by flow.decide_chunk (replay, refusal, or store it)
    the stored chunks' bets                                                             one COPY
    the log's lock, then its size and the leaves committed since the first pipeline    a pipeline
    (the batch's checkpoint signed here, with the log's key)
    their rows, their leaves and the checkpoint (one statement), COMMIT                 a pipeline

The log's lock (app/store/pg_log.py) orders the log's writers on every host: it is taken last
and held for two round trips (the second ends with the commit), so that each host's batches
wait on it as little as they can. Without a log (a store made without a key) the last two
pipelines are one: the rows and COMMIT.

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

import base64
import secrets
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import psycopg

from app.rounds import RoundError
from app.store import flow, pg_log
from app.store.base import (
    Chunk,
    ChunkReceipt,
    LogReceipt,
    StorageUnavailable,
    StoreError,
    merge_ranges,
    replay_by_key,
    replay_by_range,
)
from app.store.batch import Ticket
from app.store.txlog import TransactionalLog
from tlog import b64, leaves

ChunkTicket = Ticket[Chunk, ChunkReceipt]
Answer = ChunkReceipt | StoreError | RoundError

AGENCY_LOCK_BASE = 0x4C4F5454_10000000  # + agency id: chunks (shared) vs done (exclusive)
BET_COLUMNS = "agency, first_name, last_name, document, birthdate, number"

# Each lock set in one statement, in the arrays' order (sorted: see above): a function scan
# hands unnest's elements on in order. A statement per lock cost a batch of one-bet chunks as
# many statements as agencies (issue 22).
UPLOAD_LOCKS = (
    "SELECT count(pg_advisory_xact_lock(u.agency, u.upload)) FROM unnest(%b::int[], %b::int[]) AS u(agency, upload)"
)
AGENCY_LOCKS = "SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest(%b::bigint[]) AS k"
# The stored (fingerprint, count, leaf, salt) of the batch's keys: one lottery_chunks_key index
# probe each, whatever the planner knows. The plain join, planned before the table had
# statistics (a new database's first minute: autovacuum had not analyzed it), read the round's
# every chunk row per batch (20 million rows fetched for 1,702 batches of one-bet chunks); an
# equality probe tied with lottery_chunks_ranges, which reads the agency's every row. The
# first key >= the one asked, in key order, is what only lottery_chunks_key gives without a
# sort; it is the chunk when it equals the key.
STORED_KEYS = (
    "SELECT k.i, c.fingerprint, c.count, c.log_index, c.salt "
    "FROM unnest(%b::int[], %b::int[], %b::text[]) AS k(i, agency, key) "
    "CROSS JOIN LATERAL (SELECT c.idempotency_key, c.fingerprint, c.count, c.log_index, c.salt "
    "FROM lottery_chunks c WHERE c.round = %s::int AND c.agency = k.agency AND c.idempotency_key >= k.key "
    "ORDER BY c.idempotency_key LIMIT 1) c "
    "WHERE c.idempotency_key = k.key"
)
# For each chunk of an upload, the one stored span that can decide it: stored ranges of an upload
# never overlap and are never empty, so the only one that can equal or overlap [start, stop) is
# the last to start before stop: one backward step of the lottery_chunks_ranges index per chunk,
# however many chunks the upload has.
NEIGHBOUR_SPANS = (
    "SELECT k.i, s.upload_start, s.upload_end, s.fingerprint, s.log_index, s.salt "
    "FROM unnest(%b::int[], %b::int[], %b::text[], %b::bigint[]) AS k(i, agency, upload_id, stop) "
    "CROSS JOIN LATERAL (SELECT c.upload_start, c.upload_end, c.fingerprint, c.log_index, c.salt FROM lottery_chunks c "
    "WHERE c.round = %s::int AND c.agency = k.agency AND c.upload_id = k.upload_id AND c.upload_start < k.stop "
    "ORDER BY c.upload_start DESC LIMIT 1) s"
)
# Read with the agencies' shared locks held: a done committed before is seen; none commits until
# this ends. With the batch's chunk ids drawn in the same statement (one statement fewer a
# batch: issue 22). A row even without the round's (its drawn then NULL).
CLOSED_AND_IDS = (
    "SELECT (SELECT r.drawn FROM lottery_round r WHERE r.id = %s::int), "
    "ARRAY(SELECT d.agency FROM lottery_done d WHERE d.round = %s::int AND d.agency = ANY(%b::int[])), "
    "ARRAY(SELECT nextval('lottery_chunk_ids') FROM generate_series(1, %s))"
)
# The batch's chunk rows as one JSON parameter: psycopg dumps each array parameter in Python,
# element by element, and this statement had twelve (161 to 186 µs of client CPU for twelve
# rows, against 80 for their JSON from orjson: issue 22).
INSERT_CHUNKS = (
    "INSERT INTO lottery_chunks (id, round, agency, idempotency_key, fingerprint, count, upload_id, "
    "upload_start, upload_end, body_digest, log_index, salt, auto_key) "
    "SELECT k.id, %s::int, k.agency, k.key, k.fingerprint, k.count, k.upload_id, k.upload_start, k.upload_end, "
    "k.digest, k.log_index, decode(k.salt, 'base64'), k.auto_key "
    "FROM json_to_recordset(%s::json) AS k(id bigint, agency int, key text, fingerprint text, count int, "
    "upload_id text, upload_start bigint, upload_end bigint, digest text, log_index bigint, salt text, auto_key text)"
)
# The rows with their leaves and checkpoint: one statement (pg_log.APPEND_ITEMS).
INSERT_LOGGED_CHUNKS = f"WITH {pg_log.APPEND_ITEMS} {INSERT_CHUNKS}"
# A replayed chunk's leaf, for its receipt.
REPLAYED_LEAVES = "SELECT idx, leaf FROM lottery_log_leaves WHERE idx = ANY(%b::bigint[])"
LATEST_CHECKPOINT = "SELECT size, note FROM lottery_log_checkpoints ORDER BY size DESC LIMIT 1"
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
    # chunk's place -> the leaf index and salt of the chunk found by its key, and by its range
    key_logs: dict[int, tuple[int, bytes]]
    span_logs: dict[int, tuple[int, bytes]]


Round = tuple[int, int, int]  # (round id, its agencies, the current round id)


def store_batch(
    conn: psycopg.Connection[Any],
    tickets: Sequence[ChunkTicket],
    assumed: tuple[int, int] | None,
    resolve: Callable[[psycopg.Connection[Any]], Callable[[], Round]],
    named: bool,
    log: TransactionalLog | None = None,
) -> tuple[list[tuple[ChunkTicket, Answer]], list[ChunkTicket]]:
    """One transaction on ``conn`` (an autocommit connection: BEGIN and COMMIT are sent here, with
    other statements): lock, decide and write ``tickets``, for the round ``resolve`` finds (it
    sends the round's query and returns what reads its answer; a refused round raises RoundError).
    ``assumed`` is ``(round id, agencies)`` as last seen, if any; ``named``: the request named
    its round. ``log``: the transparency log, whose leaves for the stored chunks and checkpoint
    commit with them. Returns each decided chunk's answer, committed, and the chunks left for the next batch."""
    chunks = [ticket.item for ticket in tickets]
    # On a failure, the connection's context (PostgresStore._connection) rolls the transaction back.
    with conn.cursor() as cur:
        known = log.known() if log is not None else 0
        with conn.pipeline():
            conn.execute("BEGIN")
            round_of = resolve(conn)
            reading = _lock_and_read(conn, *assumed, chunks) if assumed is not None else None
            # The leaves other writers committed since this process last read: read before the
            # log's lock, so that under it only those of the last moments are. A page of them:
            # a process far behind reads the rest a page at a time below (pg_log.catch_up).
            since = conn.execute(pg_log.SINCE_PAGE, (known, pg_log.CATCH_UP_PAGE)) if log is not None else None
        round_id, agencies, current = round_of()
        if reading is None or assumed != (round_id, agencies):
            with conn.pipeline():
                reading = _lock_and_read(conn, round_id, agencies, chunks)
        found = reading()
        if log is not None and since is not None:
            page = [bytes(row[0]) for row in since.fetchall()]
            log.feed(known, page)
            if len(page) == pg_log.CATCH_UP_PAGE:
                pg_log.catch_up(conn, log)
        answers, stored, deferred = _decide(
            cur, tickets, found, round_id, agencies, (round_id, lambda: current) if named else None
        )
        chunks = [ticket.item for ticket in stored]
        ids = found.ids[: len(chunks)]
        if chunks:
            with cur.copy(COPY_BETS) as copy:
                # The payloads are already the stored CSV format, which COPY's csv mode reads as is.
                copy.write(b"".join(_tagged(c.payload, chunk_id) for c, chunk_id in zip(chunks, ids, strict=True)))
        logged = _leaves(round_id, chunks) if log is not None and chunks else None
        found_leaves = [leaf for leaf, _, _ in logged] if logged is not None else []
        appended = None
        if log is not None and logged is not None:
            known = log.known()
            with conn.pipeline():
                head = pg_log.send_lock(conn, known)
            appended = pg_log.sign(log, known, head, found_leaves)
        with conn.pipeline():
            if appended is not None and logged is not None:  # then chunks is not empty
                rows = _chunk_rows(round_id, chunks, ids, appended, logged)
                cur.execute(INSERT_LOGGED_CHUNKS, (*pg_log.append_parameters(appended, found_leaves), *rows))
            elif chunks:
                cur.execute(INSERT_CHUNKS, _chunk_rows(round_id, chunks, ids, appended, logged))
            conn.execute("COMMIT")
        if appended is not None and log is not None:
            log.feed(appended.start, found_leaves)  # committed: no need to read them back
        if appended is not None and logged is not None:
            for at, (ticket, (leaf, salt, _)) in enumerate(zip(stored, logged, strict=True)):
                index, shown = appended.start + at, b64.encode(salt)
                receipt = LogReceipt(index, appended.size, leaf, shown, appended.note)
                answers.append(
                    (ticket, ChunkReceipt(ticket.item.agency, ticket.item.count, False, index, shown, receipt))
                )
        else:
            answers.extend((ticket, ChunkReceipt(ticket.item.agency, ticket.item.count)) for ticket in stored)
        if log is not None:
            _replays_receipts(conn, answers, appended)
    return answers, deferred


def _leaves(round_id: int, chunks: list[Chunk]) -> list[tuple[bytes, bytes, str | None]]:
    """Each stored chunk's leaf, its salt, and the leaf's key when the chunk has no Idempotency-Key
    (drawn here, kept with the chunk so that its leaf can be checked again)."""
    made = []
    for chunk in chunks:
        salt = chunk.salt if chunk.salt is not None else leaves.new_salt()
        digest = chunk.leaf_digest if chunk.salt is not None and chunk.leaf_digest is not None else None
        if digest is None:
            digest = leaves.chunk_digest(salt, chunk.payload)
        key = chunk.idempotency_key
        auto = None
        if key is None:
            key = auto = "auto-" + secrets.token_hex(16)
        made.append((leaves.ChunkStored(round_id, chunk.agency, key, chunk.count, digest).bytes(), salt, auto))
    return made


def _replays_receipts(
    conn: psycopg.Connection[Any], answers: list[tuple[ChunkTicket, Answer]], appended: pg_log.Appended | None
) -> None:
    """After the commit: each replayed chunk's leaf (as first stored) and a checkpoint that holds
    it (the batch's own, or the latest), in one round trip; only when a batch replays."""
    replayed = [
        (at, answer)
        for at, (_, answer) in enumerate(answers)
        if isinstance(answer, ChunkReceipt) and answer.replayed and answer.log_index is not None
    ]
    if not replayed:
        return
    with conn.pipeline():
        found = conn.execute(REPLAYED_LEAVES, ([answer.log_index for _, answer in replayed],))
        latest = conn.execute(LATEST_CHECKPOINT) if appended is None else None
    leaf_of = {int(idx): bytes(leaf) for idx, leaf in found.fetchall()}
    row = latest.fetchone() if latest is not None else (appended.size, appended.note) if appended else None
    if row is None:
        return
    size, note = int(row[0]), bytes(row[1])
    for at, answer in replayed:
        assert answer.log_index is not None and answer.salt is not None
        leaf = leaf_of.get(answer.log_index)
        if leaf is not None and answer.log_index < size:
            receipt = LogReceipt(answer.log_index, size, leaf, answer.salt, note)
            answers[at] = (answers[at][0], replace(answer, log=receipt, leaf=leaf))


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
    conn: psycopg.Connection[Any], round_id: int, agencies: int, chunks: list[Chunk]
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
        conn.execute(UPLOAD_LOCKS, ([agency for agency, _ in uploads], [key for _, key in uploads]))
    if agency_locks:
        conn.execute(AGENCY_LOCKS, (agency_locks,))
    closed = conn.execute(CLOSED_AND_IDS, (round_id, round_id, sorted({c.agency for c in chunks}), len(chunks)))
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

    def found() -> Found:
        row = closed.fetchone()
        if row is None:
            raise StorageUnavailable("the database returned no row where one always exists; retry shortly")
        drawn, done, ids = bool(row[0]), frozenset(row[1]), row[2]
        key_rows = stored_keys.fetchall() if stored_keys else []
        span_rows = spans.fetchall() if spans else []
        return Found(
            drawn,
            done,
            {row[0]: (row[1], row[2]) for row in key_rows},
            {row[0]: (row[1], row[2], row[3]) for row in span_rows},
            sorted(ids),
            {row[0]: (int(row[3]), bytes(row[4])) for row in key_rows if row[3] is not None},
            {row[0]: (int(row[4]), bytes(row[5])) for row in span_rows if row[4] is not None},
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
            return _with_log(replay, found.key_logs.get(i))
    if chunk.upload is not None:
        span = found.spans.get(i)
        upload_id = chunk.upload.upload_id
        replay = replay_by_range(
            chunk, [span] if span else [], lambda: _committed(cur, round_id, chunk.agency, upload_id)
        )
        return None if replay is None else _with_log(replay, found.span_logs.get(i))
    return None


def _with_log(receipt: ChunkReceipt, logged: tuple[int, bytes] | None) -> ChunkReceipt:
    """A replay's receipt with the leaf and salt the chunk got when first stored."""
    return receipt if logged is None else replace(receipt, log_index=logged[0], salt=b64.encode(logged[1]))


def _committed(cur: psycopg.Cursor[Any], round_id: int, agency: int, upload_id: str) -> list[tuple[int, int]]:
    """An upload's stored ranges, merged (a RangeConflict lists them)."""
    cur.execute(
        "SELECT upload_start, upload_end FROM lottery_chunks WHERE round = %s AND agency = %s AND upload_id = %s",
        (round_id, agency, upload_id),
    )
    return merge_ranges([(s, e) for s, e in cur.fetchall()])


def _chunk_rows(
    round_id: int,
    chunks: list[Chunk],
    ids: list[int],
    appended: pg_log.Appended | None = None,
    logged: list[tuple[bytes, bytes, str | None]] | None = None,
) -> tuple[int, str]:
    """INSERT_CHUNKS's parameters: the round, and the chunks' rows as JSON (a salt in base64)."""
    made = logged if appended is not None and logged is not None else None
    rows = []
    for at, (chunk, chunk_id) in enumerate(zip(chunks, ids, strict=True)):
        upload = chunk.upload
        rows.append(
            {
                "id": chunk_id,
                "agency": chunk.agency,
                "key": chunk.idempotency_key,
                "fingerprint": chunk.fingerprint,
                "count": chunk.count,
                "upload_id": upload.upload_id if upload else None,
                "upload_start": upload.offset if upload else None,
                "upload_end": upload.offset + chunk.count if upload else None,
                "digest": chunk.digest if upload else None,
                "log_index": appended.start + at if appended is not None and made else None,
                "salt": base64.b64encode(made[at][1]).decode("ascii") if made else None,
                "auto_key": made[at][2] if made else None,
            }
        )
    return round_id, orjson.dumps(rows).decode("utf-8")


def _tagged(payload: bytes, chunk_id: int) -> bytes:
    """The payload's lines, each prefixed with ``chunk_id,`` (no field holds a newline: one line, one bet)."""
    if not payload:
        return b""
    prefix = b"%d," % chunk_id
    return prefix + payload[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
