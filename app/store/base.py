"""The storage interface the routes talk to, and the errors every backend raises.

A backend decides *where* the round lives (files on one host, or PostgreSQL for many);
the answers and guarantees are the same for all of them:

- a chunk is stored all or nothing, together with its idempotency key and upload range;
- ``done`` is idempotent, and the request that completes the set performs the draw, once;
- winners exist only after the draw.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import anyio.to_thread

from app.domain import Row, decode_rows, encode_rows

# The rules' refusals and parameters, re-exported: the backends raise and keep them.
from app.rounds import AgencyClosed as AgencyClosed
from app.rounds import RoundError as RoundError
from app.rounds import RoundNotCurrent as RoundNotCurrent
from app.rounds import RoundNotFound as RoundNotFound
from app.rounds import RoundParameters as RoundParameters
from app.rounds import RoundStillOpen as RoundStillOpen
from app.store.stats import RoundStats
from tlog import leaves


class LogView(Protocol):
    """What the routes read of the service's transparency log (app/store/txlog.py's SignedLog):
    signed sizes only, so never a leaf a crash may still cut."""

    origin: str

    @property
    def vkey(self) -> str: ...
    def latest(self) -> tuple[int, bytes] | None: ...
    def size(self) -> int: ...
    def checkpoint(self, size: int | None = None) -> bytes | None: ...
    def entries(self, start: int, end: int) -> list[bytes]: ...
    def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...
    def consistency_proof(self, old: int, size: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class UploadSpan:
    """Where a chunk sits in an agency's file: lines ``[offset, offset + count)`` of upload ``upload_id``."""

    upload_id: str
    offset: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """A validated chunk, serialized once: the stored CSV bytes, their count and fingerprint."""

    agency: int
    payload: bytes  # rows in the stored format, agency first, LF-terminated
    count: int
    fingerprint: str
    idempotency_key: str | None = None
    upload: UploadSpan | None = None
    # SHA-256 of the request body as sent, LF-normalized (see body_digest): stored with the
    # upload range so that a rerun can prove its file still holds those lines.
    digest: str | None = None
    # The transparency log's salt for this chunk (the uploader's Lottery-Salt, or drawn by the
    # server) and the salted digest of the payload its leaf records (tlog.leaves.chunk_digest):
    # computed here, before the store's lock.
    salt: bytes | None = None
    leaf_digest: bytes | None = None

    @classmethod
    def build(
        cls,
        agency: int,
        payload: bytes,
        count: int,
        idempotency_key: str | None = None,
        upload: UploadSpan | None = None,
        digest: str | None = None,
        salt: bytes | None = None,
    ) -> Chunk:
        # The fingerprint covers what is stored, so the same bets sent as JSON or as CSV
        # count as the same request, and a different body under the same key is caught.
        leaf_digest = None if salt is None else leaves.chunk_digest(salt, payload)
        fingerprint = hashlib.sha256(payload).hexdigest()
        return cls(agency, payload, count, fingerprint, idempotency_key, upload, digest, salt, leaf_digest)

    @classmethod
    def from_rows(
        cls,
        agency: int,
        rows: list[Row],
        idempotency_key: str | None = None,
        upload: UploadSpan | None = None,
        digest: str | None = None,
    ) -> Chunk:
        return cls.build(agency, encode_rows(rows), len(rows), idempotency_key, upload, digest)

    @property
    def rows(self) -> list[Row]:
        """The rows, parsed back from the payload (for backends that insert row by row, and debug logs)."""
        return decode_rows(self.payload)


@dataclass(frozen=True, slots=True)
class LogReceipt:
    """Where a chunk's leaf is in the transparency log, and a signed checkpoint that holds it."""

    index: int
    size: int  # the checkpoint's tree size: > index
    leaf: bytes
    salt: str  # base64, as the ledger keeps it
    checkpoint: bytes  # the signed note


@dataclass(frozen=True, slots=True)
class ChunkReceipt:
    agency: int
    stored: int
    replayed: bool = False
    # The chunk's place in the transparency log, when the backend keeps one (not compared: two
    # receipts are equal when they tell the same about the bets).
    log_index: int | None = field(default=None, compare=False)  # the chunk's leaf
    salt: str | None = field(default=None, compare=False)  # its salt, base64
    log: LogReceipt | None = field(default=None, compare=False)  # filled in once the chunk is committed
    leaf: bytes | None = field(default=None, compare=False, repr=False)  # its leaf, when the backend has it at hand

    def with_log(self, log: LogReceipt) -> ChunkReceipt:
        """This receipt with its log receipt (dataclasses.replace, without its per-call field survey)."""
        return ChunkReceipt(self.agency, self.stored, self.replayed, self.log_index, self.salt, log, self.leaf)


@dataclass(frozen=True, slots=True)
class DoneReceipt:
    agency: int
    done: int
    expected: int
    drawn: bool


@dataclass(frozen=True, slots=True)
class RoundStatus:
    expected: int
    done_count: int  # agencies done; who they are: Store.done_agencies, a page at a time (issue 21)
    drawn: bool
    bets: int
    round_id: int = 1


def body_digest(body: bytes | bytearray) -> str:
    """The digest of a chunk's body kept with its upload range: SHA-256 of the body with every
    CRLF made LF (the uploader recomputes it over its file's lines; no copy without a CR)."""
    return hashlib.sha256(body if b"\r" not in body else body.replace(b"\r\n", b"\n")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredSpan:
    """One stored chunk of an upload: bets ``[start, end)``, and its body digest (None when an
    older release stored it)."""

    start: int
    end: int
    digest: str | None = None
    # The chunk's leaf in the transparency log and its salt (base64); None: not logged. Not
    # compared: two spans are equal when they tell the same about the bets.
    log_index: int | None = field(default=None, compare=False)
    salt: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class UploadState:
    upload_id: str
    spans: tuple[StoredSpan, ...] = ()  # the stored chunks as stored, sorted by start, unmerged

    @property
    def committed(self) -> list[tuple[int, int]]:
        """The stored ranges, merged."""
        return merge_ranges([(span.start, span.end) for span in self.spans])

    @property
    def bets(self) -> int:
        return sum(span.end - span.start for span in self.spans)


@dataclass(frozen=True, slots=True)
class UploadSummary:
    """One upload of an agency in this round: its id, bets stored and chunks stored."""

    upload_id: str
    bets: int
    chunks: int


@dataclass(frozen=True, slots=True)
class RoundDraw:
    """A drawn round's place in the log: the tree of ``size`` leaves (its close leaf the last)
    with ``root``, and the seed its number was derived from (None: a fixed number)."""

    seed: bytes | None
    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class RoundLog:
    """A round's leaves in the transparency log."""

    opened: int | None  # its round-opened leaf (None: opened before the log existed)
    closed: int | None  # its round-closed leaf, once drawn
    seed_commitment: bytes | None  # a random round's, from its opening
    draw: RoundDraw | None


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """One round as the API shows it (``GET /rounds/{round}``)."""

    round: int
    agencies: int
    winning_number: int | None  # None: a random round not drawn yet
    random: bool
    done_count: int  # agencies done; who they are: Store.done_agencies, a page at a time (issue 21)
    bets: int
    winners: int | None  # the winners count, once drawn
    opened_at: str | None  # ISO 8601, UTC; None when an older release did not record it
    drawn_at: str | None
    log: RoundLog | None = None  # None: a backend without the transparency log

    @property
    def drawn(self) -> bool:
        return self.winners is not None

    @property
    def state(self) -> str:
        return "drawn" if self.drawn else "open"


class StoreError(Exception):
    """Base of the errors a backend raises on purpose; routes map each to one status."""


class IdempotencyMismatch(StoreError):
    """The same Idempotency-Key (or upload range) came back with different bets (422)."""


class RangeConflict(StoreError):
    """The chunk overlaps lines of the same upload that are already stored (409)."""

    def __init__(self, message: str, committed: list[tuple[int, int]]):
        super().__init__(message)
        self.committed = committed


class StorageUnavailable(StoreError):
    """The storage cannot be written or read right now (503); nothing was half-stored."""


class DataCorrupt(StorageUnavailable):
    """A file or row of the store is not what the store wrote (a power cut, a hand edit): every
    request answers 503 naming it and where, and nothing is guessed, until it is repaired."""


class StorageBusy(StorageUnavailable):
    """The storage lock was not granted in time (503 with Retry-After)."""


def replay_by_key(chunk: Chunk, stored: tuple[str, int] | None) -> ChunkReceipt | None:
    """The answer to a chunk whose Idempotency-Key was stored as ``(fingerprint, count)``.

    Every backend decides replays with these two functions, so they answer alike.
    """
    if stored is None:
        return None
    if stored[0] != chunk.fingerprint:
        raise IdempotencyMismatch("this Idempotency-Key was already used for a different chunk")
    return ChunkReceipt(chunk.agency, stored[1], replayed=True)


def replay_by_range(
    chunk: Chunk,
    spans: Iterable[tuple[int, int, str] | tuple[int, int, str, str | None] | Span],
    committed: Callable[[], list[tuple[int, int]]],
) -> ChunkReceipt | None:
    """The answer to a chunk of an upload, given stored ``(start, end, fingerprint)`` spans of it.

    The same range with the same bets is a replay; with other bets, a mismatch; an overlap,
    a conflict listing the upload's stored ranges (``committed`` is asked only then).
    ``spans`` may be every stored span of the upload or only :meth:`SpanIndex.neighbour`'s:
    the answer is the same.
    """
    assert chunk.upload is not None
    start, end = chunk.upload.offset, chunk.upload.offset + chunk.count
    for s, e, fingerprint, *_ in spans:
        if (s, e) == (start, end):
            if fingerprint != chunk.fingerprint:
                raise IdempotencyMismatch(f"lines {start}-{end} of this upload were stored with different bets")
            return ChunkReceipt(chunk.agency, chunk.count, replayed=True)
        if s < end and start < e:
            raise RangeConflict(
                f"lines {start}-{end} overlap lines {s}-{e} already stored for this upload", committed()
            )
    return None


Span = tuple[int, int, str, str | None, tuple[int, str] | None]  # log: (leaf index, salt in base64)


class SpanIndex:
    """The stored spans of one upload, ``(start, end, fingerprint, digest, log)``, sorted by start
    (``log``: the chunk's leaf index and salt, or None).

    Stored spans never overlap and are never empty (an empty chunk is refused before it
    gets here), so the one span that can equal or overlap a new range ``[start, end)`` is
    the one with the greatest start below ``end``: a bisection finds it, and deciding a
    chunk costs O(log n) however many chunks the upload already has.
    """

    __slots__ = ("_starts", "_spans")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._spans: list[Span] = []

    def add(
        self, start: int, end: int, fingerprint: str, digest: str | None = None, log: tuple[int, str] | None = None
    ) -> None:
        at = bisect.bisect_left(self._starts, start)  # uploads usually go forward: an append
        self._starts.insert(at, start)
        self._spans.insert(at, (start, end, fingerprint, digest, log))

    def neighbour(self, end: int) -> list[Span]:
        """The only stored span that may decide a range ending at ``end``: the last one to start
        before it (as a list: none or one)."""
        at = bisect.bisect_left(self._starts, end) - 1
        return [self._spans[at]] if at >= 0 else []

    def ranges(self) -> list[tuple[int, int]]:
        return merge_ranges([(s, e) for s, e, *_ in self._spans])

    def stored(self) -> tuple[StoredSpan, ...]:
        return tuple(
            StoredSpan(s, e, d, *(log if log is not None else (None, None))) for s, e, _, d, log in self._spans
        )

    def __iter__(self) -> Iterator[Span]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# Done agencies read per query while walking to the pending ones: few round trips when most are done.
DONE_BATCH = 1000


class Store(ABC):
    """What the HTTP layer needs from storage. Every method is blocking: call it off the event loop."""

    # The service's transparency log (app/store/txlog.py); None where the backend keeps none.
    log: LogView | None = None

    # The round's parameters: the recorded ones once the store has read its round (a restart
    # with other settings keeps them), the settings' until then.
    agencies: int
    winning_number: int
    # How often a long-polling winners request asks this store whether the draw happened:
    # cheap for files (a stat), a query for a database.
    winners_poll_interval: float = 0.05

    # Every round-scoped method takes ``round``: a round id, or None for the current round (the
    # newest). Bets and done for a round that is not the current one raise RoundNotCurrent; an
    # unknown round id raises RoundNotFound.

    @abstractmethod
    def append_chunk(self, chunk: Chunk, round: int | None = None) -> ChunkReceipt:
        """Store the chunk all or nothing, or answer a replay from the record."""

    async def store_chunk(self, chunk: Chunk, round: int | None = None) -> ChunkReceipt:
        """:meth:`append_chunk` from the event loop: by default in the thread pool; a backend may
        hand the chunk to a committer thread instead (one hop per batch, not one per request)."""
        return await anyio.to_thread.run_sync(functools.partial(self.append_chunk, chunk, round))

    @abstractmethod
    def mark_done(self, agency: int, round: int | None = None) -> DoneReceipt:
        """Record that the agency sent everything; the call that completes the set draws."""

    @abstractmethod
    def winners(self, agency: int, round: int | None = None) -> list[str] | None:
        """The agency's winning documents, or None while the draw has not happened."""

    @abstractmethod
    def status(self, *, draw: bool = True, round: int | None = None) -> RoundStatus:
        """The round's state. ``draw=False`` only reads: a round whose agencies are all done but
        not drawn yet (a crash in between) stays undrawn, so a starting worker can report it."""

    @abstractmethod
    def upload_state(self, agency: int, upload_id: str, round: int | None = None) -> UploadState: ...

    @abstractmethod
    def uploads(self, agency: int, round: int | None = None) -> list[UploadSummary]:
        """The agency's uploads in the round, in the order they were first stored."""

    @abstractmethod
    def current_round(self) -> int:
        """The id of the newest round (the one that takes bets while open)."""

    @abstractmethod
    def round_info(self, round: int | None = None) -> RoundInfo:
        """One round's parameters and state (never draws)."""

    @abstractmethod
    def done_agencies(self, after: int, limit: int, round: int | None = None) -> list[int]:
        """The round's done agencies above ``after``, ascending, at most ``limit``: a page read in
        order from where the last one ended, at a cost of the page, not of the round's agencies."""

    def pending_agencies(self, after: int, limit: int, round: int | None = None) -> list[int]:
        """The round's agencies above ``after`` not done yet, ascending, at most ``limit``: the ids
        walked from ``after``, skipping the done ones read a batch at a time (done_agencies), so a
        page costs its ``limit`` plus the done agencies it skips, never the round's agencies."""
        agencies = self.round_agencies(round)
        batch = max(limit, DONE_BATCH)
        pending: list[int] = []
        cursor = after
        while len(pending) < limit and cursor < agencies:
            done = self.done_agencies(cursor, batch, round)
            if len(done) == batch and done[-1] - cursor == batch:  # every id of the batch done: no gap
                cursor = done[-1]
                continue
            # Past the last done batch, the next "done" is one past the round's agencies.
            for next_done in done if len(done) == batch else [*done, agencies + 1]:
                pending.extend(range(cursor + 1, min(next_done, cursor + 1 + limit - len(pending))))
                cursor = next_done
                if len(pending) == limit:
                    break
        return pending

    @abstractmethod
    def rounds(self, limit: int = 20, before: int | None = None) -> list[RoundInfo]:
        """Rounds newest first: up to ``limit`` of them with an id below ``before`` (all when None)."""

    @abstractmethod
    def open_round(self, agencies: int | None = None, winning_number: int | str | None = None) -> RoundInfo:
        """Open the next round (RoundStillOpen while the current one is not drawn). Absent
        parameters take the settings'; ``winning_number="random"`` draws the number at the draw."""

    @abstractmethod
    def export_bets(self, out: BinaryIO, round: int | None = None) -> tuple[int, int]:
        """One round's committed bets in the course's bets.csv format, in stored order, written to
        ``out``: ``(round id, bets written)``. RoundNotFound for a round that does not exist."""

    @abstractmethod
    def agency_stats(self, round: int | None = None) -> RoundStats:
        """Per-agency bets, chunks and last activity, the done agencies and the draw's counts
        (read only; never draws)."""

    @abstractmethod
    def check_health(self) -> None:
        """Raise StorageUnavailable when the store cannot take writes."""

    def round_agencies(self, round_id: int | None = None, fresh: bool = False) -> int:  # noqa: ARG002
        """A round's agencies (the current round's for None); a backend may answer from memory
        unless ``fresh``. RoundNotFound for a round that does not exist."""
        return self.round_info(round_id).agencies

    def known_agencies(self, round_id: int | None) -> int | None:  # noqa: ARG002 - optional hook
        """A round's agencies from this process's memory (a stat at most: it runs on the event
        loop), or None when only the storage can say."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or handles."""

    def draw_marker(self, round_id: int) -> str | None:  # noqa: ARG002 - optional hook
        """A file that exists once the round is drawn, if this backend has one: the long polls'
        watcher (app/draw_watch.py) then checks it with a stat instead of asking ``winners``."""
        return None

    @property
    def expected(self) -> int:
        # Read-only alias of ``agencies`` (its old name), kept while branches still in review
        # use it; remove once nothing reads it.
        return self.agencies
