"""The storage interface the routes talk to, and the errors every backend raises.

A backend decides *where* the round lives (files on one host, or PostgreSQL for many);
the answers and guarantees are the same for all of them:

- a chunk is stored all or nothing, together with its idempotency key and upload range;
- ``done`` is idempotent, and the request that completes the set performs the draw, once;
- winners exist only after the draw.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.domain import Row, decode_rows, encode_rows


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

    @classmethod
    def build(
        cls,
        agency: int,
        payload: bytes,
        count: int,
        idempotency_key: str | None = None,
        upload: UploadSpan | None = None,
    ) -> Chunk:
        # The fingerprint covers what is stored, so the same bets sent as JSON or as CSV
        # count as the same request, and a different body under the same key is caught.
        return cls(agency, payload, count, hashlib.sha256(payload).hexdigest(), idempotency_key, upload)

    @classmethod
    def from_rows(
        cls, agency: int, rows: list[Row], idempotency_key: str | None = None, upload: UploadSpan | None = None
    ) -> Chunk:
        return cls.build(agency, encode_rows(rows), len(rows), idempotency_key, upload)

    @property
    def rows(self) -> list[Row]:
        """The rows, parsed back from the payload (for backends that insert row by row, and debug logs)."""
        return decode_rows(self.payload)


@dataclass(frozen=True, slots=True)
class ChunkReceipt:
    agency: int
    stored: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class DoneReceipt:
    agency: int
    done: int
    expected: int
    drawn: bool


@dataclass(frozen=True, slots=True)
class RoundStatus:
    expected: int
    done: list[int]
    drawn: bool
    bets: int


@dataclass(frozen=True, slots=True)
class UploadState:
    upload_id: str
    committed: list[tuple[int, int]] = field(default_factory=list)  # merged [start, end) line ranges

    @property
    def bets(self) -> int:
        return sum(end - start for start, end in self.committed)


class StoreError(Exception):
    """Base of the errors a backend raises on purpose; routes map each to one status."""


class AgencyClosed(StoreError):
    """New bets after the agency said done or after the draw (409)."""


class IdempotencyMismatch(StoreError):
    """The same Idempotency-Key (or upload range) came back with different bets (422)."""


class RangeConflict(StoreError):
    """The chunk overlaps lines of the same upload that are already stored (409)."""

    def __init__(self, message: str, committed: list[tuple[int, int]]):
        super().__init__(message)
        self.committed = committed


class StorageUnavailable(StoreError):
    """The storage cannot be written or read right now (503); nothing was half-stored."""


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
    chunk: Chunk, spans: Iterable[tuple[int, int, str]], committed: Callable[[], list[tuple[int, int]]]
) -> ChunkReceipt | None:
    """The answer to a chunk of an upload, given stored ``(start, end, fingerprint)`` spans of it.

    The same range with the same bets is a replay; with other bets, a mismatch; an overlap,
    a conflict listing the upload's stored ranges (``committed`` is asked only then).
    """
    assert chunk.upload is not None
    start, end = chunk.upload.offset, chunk.upload.offset + chunk.count
    for s, e, fingerprint in spans:
        if (s, e) == (start, end):
            if fingerprint != chunk.fingerprint:
                raise IdempotencyMismatch(f"lines {start}-{end} of this upload were stored with different bets")
            return ChunkReceipt(chunk.agency, chunk.count, replayed=True)
        if s < end and start < e:
            raise RangeConflict(
                f"lines {start}-{end} overlap lines {s}-{e} already stored for this upload", committed()
            )
    return None


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class Store(ABC):
    """What the HTTP layer needs from storage. Every method is blocking: call it off the event loop."""

    expected: int
    # How often a long-polling winners request asks this store whether the draw happened:
    # cheap for files (a stat), a query for a database.
    winners_poll_interval: float = 0.05

    @abstractmethod
    def append_chunk(self, chunk: Chunk) -> ChunkReceipt:
        """Store the chunk all or nothing, or answer a replay from the record."""

    @abstractmethod
    def mark_done(self, agency: int) -> DoneReceipt:
        """Record that the agency sent everything; the call that completes the set draws."""

    @abstractmethod
    def winners(self, agency: int) -> list[str] | None:
        """The agency's winning documents, or None while the draw has not happened."""

    @abstractmethod
    def status(self, *, draw: bool = True) -> RoundStatus:
        """The round's state. ``draw=False`` only reads: a round whose agencies are all done but
        not drawn yet (a crash in between) stays undrawn, so a starting worker can report it."""

    @abstractmethod
    def upload_state(self, agency: int, upload_id: str) -> UploadState: ...

    @abstractmethod
    def check_health(self) -> None:
        """Raise StorageUnavailable when the store cannot take writes."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or handles."""
