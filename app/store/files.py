"""The file backend: one host, several worker processes, agreement through files and one lock.

Files in the data dir (see README "Storage and synchronization"):

``bets.csv``      the bets, in the course's row format. Only ever appended to.
``ledger.jsonl``  one line per committed chunk: agency, count, idempotency key, fingerprint,
                  upload range and ``end``, the size of bets.csv once the chunk was in; with
                  the log, its leaf ``i``, salt ``s``, an unkeyed chunk's leaf key ``ak``, and
                  on a batch's last line ``c``, the log size its checkpoint signs.
                  **A chunk is committed when its ledger line is on disk**; bytes of bets.csv
                  past the last ``end`` belong to a write that crashed and are cut off.
``done.log``      the agencies that said done, one id a line, only ever appended to (fdatasync'd):
                  a done writes its own line, whatever the number of agencies. A line without
                  its newline was never acknowledged (crash mid-append) and is cut off.
``done.json``     how an earlier release kept them (rewritten whole on every done): still read,
                  never written; the round's done agencies are both files' together.
``winners.json``  the draw's result, replaced atomically; its presence means "drawn". A drawn
                  round never changes, so each process parses it once and keeps it.
``round.json``    the round's parameters (agencies, winning number), written once when the
                  round starts: a restart with other settings keeps them.
``.lock``         the filelock every writer holds.

A file that is not what the store wrote (a ledger line that is not a valid record, JSON that
does not parse) is never guessed around: every request answers 503 naming the file and the
byte offset, until an operator repairs it.

Workers share nothing in memory. Each keeps a *cache* of the ledger (keys, upload ranges,
totals) and of done.log (the set of done agencies and its count), always brought up to date by
reading the files' new lines while holding the lock, so a decision is never taken on stale state.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import dataclasses
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import filelock
import orjson

from app import metrics
from app import rounds as rules
from app.atomicfile import fsync_dir, write_atomically
from app.settings import DEFAULT_LOG_ORIGIN, LOG_KEY
from app.store import flow
from app.store.appendfile import AppendFile
from app.store.base import (
    Chunk,
    ChunkReceipt,
    DataCorrupt,
    DoneReceipt,
    RoundDraw,
    RoundError,
    RoundInfo,
    RoundLog,
    RoundNotFound,
    RoundParameters,
    RoundStatus,
    SpanIndex,
    StorageBusy,
    StorageUnavailable,
    StoreError,
    UploadState,
    UploadSummary,
    replay_by_key,
    replay_by_range,
)
from app.store.batch import Committer, R, T, Ticket, fail_unsettled, group_commit, turn
from app.store.files_log import FileLogStorage
from app.store.lock import ProcessLock
from app.store.stats import AgencyStats, RoundStats
from app.store.txlog import TransparencyLog, load_signer
from tlog import b64, leaves
from tlog import draw as committed_draw

log = logging.getLogger("lottery")

BETS = "bets.csv"
LEDGER = "ledger.jsonl"
DONE = "done.json"  # an earlier release's done set: read, never written
DONE_LOG = "done.log"
EXPORT_BLOCK = 1 << 20  # bytes copied at a time by an export
WINNERS = "winners.json"
ROUND = "round.json"
LOCK = ".lock"
# How old a look at the rounds may be for the edge's agency pre-check (FileStore.known_agencies):
# a request that came that much earlier would have seen the same.
EDGE_FRESHNESS = 0.01
SCAN_BLOCK = 8 * 1024 * 1024  # the draw reads bets.csv in blocks of this size: flat memory
ROUNDS = "rounds"  # rounds/0001/, rounds/0002/, ...: one directory of the files above per round
STAGING = ".rounds.new"  # the take-over prepares rounds/ here, then renames it into place
LEGACY = (BETS, LEDGER, DONE, WINNERS, ROUND)  # a data dir of the one-round release holds these at its top
LOG_DIR = "log"  # the transparency log (app/store/files_log.py)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _size(path: str) -> int | None:
    """The file's size; None when there is no such file."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def round_dir(data_dir: Path, round_id: int) -> Path:
    return Path(data_dir) / ROUNDS / f"{round_id:04d}"


def round_ids(data_dir: Path) -> list[int]:
    """The rounds in ``data_dir``, oldest first (names that are not a number are not rounds)."""
    try:
        names = os.listdir(Path(data_dir) / ROUNDS)
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


def round_record(
    round_id: int, params: RoundParameters, opened_at: str | None, opened: tuple[int, bytes | None] | None = None
) -> dict[str, Any]:
    """round.json: what a round is opened with (a null winning number: drawn at random at the draw);
    ``opened``: its round-opened leaf's index in the log, and a random round's secret seed (kept
    here, private, until the draw publishes it)."""
    record: dict[str, Any] = {
        "round": round_id,
        "agencies": params.agencies,
        "winning_number": params.winning_number,
        "random": params.winning_number is None,
        "opened_at": opened_at or _now(),
    }
    if opened is not None:
        record["log_opened"] = opened[0]
        if opened[1] is not None:
            record["seed"] = b64.encode(opened[1])
    return record


def open_in_log(
    log: TransparencyLog, round_id: int, params: RoundParameters, committed: int
) -> tuple[int, bytes | None]:
    """A round's opening leaf appended (after ``committed`` leaves), with a new secret seed for a
    random round: (its index, the seed). Committed by the round's directory (round.json), then signed."""
    seed = committed_draw.new_seed() if params.random else None
    commitment = None if seed is None else committed_draw.seed_commitment(seed)
    leaf = leaves.RoundOpened(round_id, params.agencies, params.winning_number, commitment)
    return log.append([leaf.bytes()], committed), seed


class _LedgerIndex:
    """What this process knows of the ledger, read up to byte ``offset``."""

    def __init__(self) -> None:
        self.offset = 0  # bytes of ledger.jsonl already read
        self.end = 0  # committed size of bets.csv
        self.bets = 0  # committed bets
        self.keys: dict[tuple[int, str], tuple[str, int, tuple[int, str] | None]] = {}  # -> (fingerprint, count, log)
        # The round's chunk leaves in the transparency log (ledger lines with "i"): its close leaf says these.
        self.log_next = 0  # one past the last chunk leaf (0: none)
        self.log_chunks = 0
        self.log_bets = 0
        self.spans: dict[tuple[int, str], SpanIndex] = {}  # (agency, upload id)
        self.uploads_of: dict[int, list[str]] = {}  # agency -> its upload ids, in first-stored order
        self.by_agency: dict[int, list[Any]] = {}  # agency -> [bets, chunks, when this process saw its last chunk]

    def apply(self, record: dict[str, Any]) -> None:
        agency, count = record["a"], record["n"]
        self.end = record["end"]
        self.bets += count
        seen = self.by_agency.setdefault(agency, [0, 0, 0.0])
        seen[0], seen[1], seen[2] = seen[0] + count, seen[1] + 1, time.time()
        leaf = record.get("i")
        logged = None
        if leaf is not None:
            logged = (leaf, record["s"])
            self.log_next, self.log_chunks, self.log_bets = leaf + 1, self.log_chunks + 1, self.log_bets + count
        if record.get("k") is not None:
            self.keys[(agency, record["k"])] = (record["h"], count, logged)
        if record.get("u") is not None:
            start = record["o"]
            spans = self.spans.get((agency, record["u"]))
            if spans is None:
                spans = self.spans[(agency, record["u"])] = SpanIndex()
                self.uploads_of.setdefault(agency, []).append(record["u"])
            spans.add(start, start + count, record["h"], record.get("d"), logged)


class _DoneLog:
    """The done agencies this process knows: done.log read up to byte ``offset``, and an earlier
    release's done.json (read once). ``count`` is kept as they come: never recounted."""

    def __init__(self) -> None:
        self.offset = 0
        self.legacy_read = False
        self.agencies: set[int] = set()
        self.count = 0  # of the round's agencies 1..N
        self._sorted: list[int] | None = None

    def add(self, agency: int, agencies: int) -> None:
        if agency not in self.agencies:
            self.agencies.add(agency)
            self.count += 1 <= agency <= agencies
            self._sorted = None

    def sorted(self) -> list[int]:
        """Sorted once per change, not per request (a status asked a thousand times a second)."""
        return list(self._in_order())

    def after(self, agency: int, limit: int, agencies: int) -> list[int]:
        """Up to ``limit`` done agencies of 1..``agencies`` above ``agency``: a bisect and a slice."""
        in_order = self._in_order()
        start = bisect.bisect_right(in_order, agency)
        return [a for a in in_order[start : start + limit] if a <= agencies]

    def _in_order(self) -> list[int]:
        if self._sorted is None:
            self._sorted = sorted(self.agencies)
        return self._sorted


def done_line(line: bytes) -> int:
    """A done.log line (without its newline) as an agency id, or ValueError."""
    if not line.isdigit() or line.startswith(b"0") or len(line) > 9:
        raise ValueError(f"expected an agency id (digits), found {line[:40]!r}")
    return int(line)


_REQUIRED = (("a", int), ("n", int), ("h", str), ("end", int))
_OPTIONAL = (("k", str), ("u", str), ("d", str), ("i", int), ("s", str), ("ak", str), ("c", int))


def ledger_record(line: bytes, end_before: int) -> dict[str, Any]:
    """A ledger line as a record, or ValueError saying what is wrong with it."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not valid JSON at its byte {error.pos}: {error.msg}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for name, kind in _REQUIRED:
        if type(record.get(name)) is not kind:  # `type is`: a bool is not a count
            raise ValueError(f"field {name!r} is missing or not {kind.__name__}")
    for name, kind in _OPTIONAL:
        if record.get(name) is not None and type(record[name]) is not kind:
            raise ValueError(f"field {name!r} is not {kind.__name__}")
    if record.get("u") is not None and (type(record.get("o")) is not int or record["o"] < 0):
        raise ValueError("field 'o' (the upload offset) is missing or not a whole number")
    if (record.get("i") is None) != (record.get("s") is None):
        raise ValueError("fields 'i' (the leaf) and 's' (its salt) go together")
    if record.get("c") is not None and record.get("i") != record["c"] - 1:
        raise ValueError("field 'c' (the batch's signed size) is one past its last leaf 'i'")
    if record["n"] < 1 or record["end"] < end_before:
        raise ValueError(f"count {record['n']} or end {record['end']} is impossible after end {end_before}")
    return record


def _done_problem(value: object) -> str | None:
    agencies = value.get("agencies") if isinstance(value, dict) else None
    if not isinstance(agencies, list) or not all(type(a) is int for a in agencies):
        return 'expected {"agencies": [whole numbers]}'
    return None


def _winners_problem(value: object) -> str | None:
    winners = value.get("winners") if isinstance(value, dict) else None
    if not isinstance(winners, dict) or not all(
        isinstance(v, list) and all(isinstance(d, str) for d in v) for v in winners.values()
    ):
        return 'expected {"winners": {agency: [documents]}, ...}'
    return None


def _round_problem(value: object) -> str | None:
    # winning_number is null only in a round opened with a random number (drawn at the draw)
    if (
        not isinstance(value, dict)
        or type(value.get("agencies")) is not int
        or not (
            type(value.get("winning_number")) is int or (value.get("winning_number") is None and value.get("random"))
        )  # noqa: E501
    ):
        return 'expected {"agencies": N, "winning_number": N, ...}'
    if not (value["agencies"] >= 1 and (value["winning_number"] is None or 0 <= value["winning_number"] <= 9999)):
        return f"agencies {value['agencies']} or winning number {value['winning_number']} out of range"
    return None


def read_json(path: Path, problem: Callable[[object], str | None]) -> Any:
    """A small JSON file of the store, None when absent; DataCorrupt when it is not what we wrote."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise DataCorrupt(
            f"{path} is not valid JSON (at byte {error.pos}: {error.msg}): refusing to guess; "
            "restore or repair the file"
        ) from None
    reason = problem(value)
    if reason:
        raise DataCorrupt(f"{path} is not what the store wrote (at byte 0: {reason}): refusing to guess") from None
    return value


def recorded_round(data_dir: Path) -> RoundParameters | None:
    """The parameters recorded for the current round in ``data_dir``; None when none (or unreadable)."""
    ids = round_ids(Path(data_dir))
    try:
        value = read_json((round_dir(data_dir, ids[-1]) if ids else Path(data_dir)) / ROUND, _round_problem)
    except (OSError, StorageUnavailable):
        return None
    return None if value is None else RoundParameters(value["agencies"], value["winning_number"])


ChunkTicket = Ticket[Chunk, ChunkReceipt]
_Leaf = tuple[bytes, str, str | None]  # a chunk's leaf, its salt (base64) and its drawn key (or None)
DoneTicket = Ticket[int, flow.DoneOutcome]


class _Unread:
    """A file not read yet by the caller (None is a read that found nothing)."""


_UNREAD = _Unread()


class RoundFiles:
    """One round in one directory: today's files (bets, ledger, done, winners, round.json) and
    their lock. :class:`FileStore` keeps one such directory per round."""

    winners_poll_interval = 0.01  # a failed open() of winners.json: microseconds

    def __init__(
        self,
        data_dir: Path,
        agencies: int,
        winning_number: int | None,
        lock_timeout: float = 30.0,
        round_id: int = 1,
        translog: TransparencyLog | None = None,
        current_round: Callable[[], int] | None = None,
    ):
        self.dir = Path(data_dir)
        self.round_id = round_id
        # Where bets go now (the store's, asked only to refuse a request that named a drawn round);
        # a round kept alone is its own current round.
        self.current_round: Callable[[], int] = current_round or (lambda: round_id)
        self.log = translog  # the service's transparency log (None: a round kept without one)
        self._opened: tuple[int | None, str | None] = (None, None)  # round.json's log_opened and seed
        self.settings = RoundParameters(agencies, winning_number)  # for a round that starts now
        self.agencies, self.winning_number = agencies, winning_number  # the round's, once read
        self._round_known = False
        self._recorded: dict[str, Any] = {}  # round.json as read with the round's parameters
        self._fault: str | None = None  # a corrupt file seen: re-checked by health and winners
        self.lock_timeout = lock_timeout
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bets_path = self.dir / BETS
        self.ledger_path = self.dir / LEDGER
        self.done_path = self.dir / DONE
        self.done_log_path = self.dir / DONE_LOG
        self.winners_path = self.dir / WINNERS
        self.round_path = self.dir / ROUND
        # The same paths as text, for the calls made on every commit (pathlib costs there).
        self._bets_file, self._ledger_file = os.fspath(self.bets_path), os.fspath(self.ledger_path)
        self._done_file = os.fspath(self.done_log_path)
        # Appended to by every commit: one descriptor each, kept while the round is the current one.
        self._bets_out, self._ledger_out = AppendFile(self._bets_file), AppendFile(self._ledger_file)
        # Threads of one worker queue on a plain lock, so at most one thread per process
        # polls the file lock; the file lock then orders the processes.
        self._thread_lock = threading.Lock()
        self._queue_guard = threading.Lock()
        self._done_queue: list[DoneTicket] = []  # dones of this process waiting for the next commit
        # Taken once per group commit: filelock's lock on a descriptor kept open (app/store/lock.py).
        self._file_lock = ProcessLock(os.fspath(self.dir / LOCK), lock_timeout)
        self._keep_lock_open = True  # until the round is a past one (see retire)
        self._index = _LedgerIndex()
        self._done = _DoneLog()
        self._draw: dict[str, Any] | None = None  # winners.json once read: a drawn round never changes
        self._winners_total: int | None = None  # its winners counted once, not per GET /rounds/{n}
        try:
            with self._locked():
                self._verify()  # creates the ledger, repairs a torn tail, checks every file
        except StorageUnavailable as error:
            # Start anyway: every request retries the repair and answers 503 with the cause
            # until the disk or the files are fixed. Dying here would make gunicorn stop the
            # whole server when one worker restarts while the disk is read-only.
            log.error("action: abrir_almacenamiento | result: fail | error: %s", error)

    @property
    def expected(self) -> int:
        return self.agencies

    def close(self) -> None:
        """Close the lock's descriptor (the other files are opened per operation)."""
        self.retire()

    def retire(self) -> None:
        """A past round now: its lock's descriptor is no longer kept open between uses, so a
        process that sees thousands of rounds does not hold a descriptor for each. Closed now if
        no thread of this process is using it, else by that thread when it lets go."""
        self._keep_lock_open = False
        if self._thread_lock.acquire(blocking=False):
            try:
                self._close_descriptors()
            finally:
                self._thread_lock.release()

    def _close_descriptors(self) -> None:
        self._file_lock.close()
        self._bets_out.close()
        self._ledger_out.close()

    # -- locking and recovery ---------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._process_turn(), self._file_turn():
            yield

    def _process_turn(
        self, ticket: Ticket[Any, Any] | None = None, queue: list[Any] | None = None
    ) -> AbstractContextManager[None]:
        """This process's turn at the storage (threads of one worker queue here)."""
        return turn(self._thread_lock, self._queue_guard, self.lock_timeout, ticket, queue)

    @contextmanager
    def _file_turn(self) -> Iterator[None]:
        """The file lock, across processes; the store is repaired and re-read on entry."""
        waiting = time.perf_counter()
        try:
            self._file_lock.acquire()
        except filelock.Timeout:
            raise StorageBusy("the storage lock was not granted in time; retry shortly") from None
        except OSError as error:
            raise StorageUnavailable(f"cannot lock the data dir: {error.strerror or error}") from None
        metrics.observe_lock_wait(time.perf_counter() - waiting)  # never raises
        try:
            self._recover()
            yield
        except OSError as error:
            raise StorageUnavailable(f"storage error: {error.strerror or error}") from None
        except DataCorrupt as error:
            self._fault = str(error)
            raise
        finally:
            self._file_lock.release(close=not self._keep_lock_open)
            # No descriptor open for writing between turns: it would keep the volume from being
            # remounted read-only (tests/faults/test_disk.py) while the server runs.
            self._bets_out.close()
            self._ledger_out.close()

    def _verify(self) -> None:
        """Under the lock: every file of the store read (the done files by _recover), so a corrupt
        one is known now."""
        self._read_winners()
        self._fault = None

    def _recheck_fault(self) -> None:
        """After a corrupt file was seen: 503 until it is repaired (checked again under the lock)."""
        if self._fault is not None:
            with self._locked():
                self._verify()

    def _recover(self) -> None:
        """Bring the cache up to date and cut off anything a crashed writer left uncommitted."""
        ledger = _stat(self._ledger_file)
        bets = _stat(self._bets_file)
        self._ledger_out.follow(ledger)  # a file replaced or made anew: its descriptor reopened
        self._bets_out.follow(bets)
        if ledger is None:
            if bets is not None and bets.st_size:
                raise DataCorrupt(f"{self.bets_path} has bets but no {LEDGER}: refusing to guess what is committed")
            self._create_empty(self.ledger_path)
        self._read_ledger(0 if ledger is None else ledger.st_size)
        if not self._round_known:
            self._read_round()
        self._read_done_log()
        size = 0 if bets is None else bets.st_size
        if size > self._index.end:
            # A writer died between writing its bets and committing them: drop the tail.
            with open(self.bets_path, "r+b") as f:
                f.truncate(self._index.end)
                os.fsync(f.fileno())
            log.warning("action: reparacion | result: success | bytes_descartados: %d", size - self._index.end)
        elif size < self._index.end:
            raise DataCorrupt(
                f"{BETS} is shorter than the ledger says ({size} < {self._index.end}): data lost outside the service"
            )
        if self.log is not None and self._keep_lock_open:  # the current round: the log's newest leaves are its
            committed = self.log_committed()
            if committed > self.log.size():  # a crash between a commit point and its checkpoint
                self.log.sign(committed)  # durable: it may be a round's opening or close

    def committed_leaves(self) -> int:
        """log_committed, read under the round's lock (a round about to be followed by the next)."""
        with self._locked():
            return self.log_committed()

    def log_committed(self, result: dict[str, Any] | None | _Unread = _UNREAD) -> int:
        """Under the lock: how many of the log's leaves are committed, as this round's files say
        (its opening, its chunks' ledger lines, its close): only the newest round appends, so the
        log's last committed leaf is recorded here. Past it on disk: a crashed writer's leaves.
        ``result``: winners.json as the caller just read it (None: there is none), else read here."""
        if isinstance(result, _Unread):
            result = self._read_winners()
        draw = None if result is None else result.get("log")
        opened = self._opened[0]
        return max(
            0 if opened is None else opened + 1,
            self._index.log_next,
            0 if not isinstance(draw, dict) else int(draw["closed"]) + 1,
        )

    def _read_round(self) -> None:
        """The round's parameters, recorded when it started (now, if this is its start)."""
        value = self._read_json(self.round_path, _round_problem)
        if value is None:
            # A new round, or a data dir of a release that did not record them: pin the settings.
            value = round_record(self.round_id, self.settings, opened_at=None)
            self._replace_json(self.round_path, value)
            log.info(
                "action: ronda_registrada | result: success | agencias: %d | numero_ganador: %s",
                value["agencies"],
                value["winning_number"],
            )
        self.agencies, self.winning_number = value["agencies"], value["winning_number"]
        opened = value.get("log_opened")
        self._opened = (opened if type(opened) is int else None, value.get("seed"))
        self._recorded = value  # round.json is written once: kept, not read per GET /rounds/{n}
        self._round_known = True

    def _read_ledger(self, size: int) -> None:
        index = self._index
        if size < index.offset:  # the ledger was replaced (a new round): start over
            index = self._index = _LedgerIndex()
            self._round_known = False
        if size == index.offset:
            return
        with open(self.ledger_path, "rb") as f:
            f.seek(index.offset)
            data = f.read()
        complete = data.rfind(b"\n") + 1
        position = 0
        while position < complete:
            newline = data.index(b"\n", position)
            try:
                record = ledger_record(data[position:newline], index.end)
            except ValueError as error:
                index.offset += position  # the records before it stay read, and are not read twice
                raise DataCorrupt(
                    f"{self.ledger_path}: the line at byte {index.offset} is not a valid ledger record ({error}): "
                    "refusing to guess what is committed; repair or restore the file"
                ) from None
            index.apply(record)
            position = newline + 1
        index.offset += complete
        if complete < len(data):
            # A torn ledger line (crash mid-append): not committed, so it goes, and so do
            # the bets it would have covered (cut off by the caller, past index.end).
            with open(self.ledger_path, "r+b") as f:
                f.truncate(index.offset)
                os.fsync(f.fileno())

    def _read_done_log(self) -> None:
        """Under the lock: the done agencies up to date, reading only done.log's new lines (and
        an earlier release's done.json, once)."""
        done = self._done
        if not done.legacy_read:
            value = self._read_json(self.done_path, _done_problem)
            for agency in value["agencies"] if value else ():
                done.add(agency, self.agencies)
            done.legacy_read = True
        size = _size(self._done_file) or 0
        if size < done.offset:  # replaced by hand: start over
            self._done = _DoneLog()
            return self._read_done_log()
        if size == done.offset:
            return None
        with open(self._done_file, "rb") as f:
            f.seek(done.offset)
            data = f.read(size - done.offset)
        complete = data.rfind(b"\n") + 1
        for line in data[:complete].split(b"\n")[:-1]:
            try:
                agency = done_line(line)
            except ValueError as error:
                raise DataCorrupt(
                    f"{self.done_log_path}: the line at byte {done.offset} is not what the store wrote ({error}): "
                    "refusing to guess who is done; repair or restore the file"
                ) from None
            done.add(agency, self.agencies)
            done.offset += len(line) + 1
        if complete < len(data):
            # A torn line (crash mid-append): that done was never answered, so it goes.
            with open(self._done_file, "r+b") as f:
                f.truncate(done.offset)
                os.fsync(f.fileno())
        return None

    def _write_done(self, agencies: list[int]) -> None:
        """Under the lock: these agencies' lines appended to done.log, with one fdatasync. They are
        in ``self._done`` already (provisionally): a failed write forgets what was not read back."""
        lines = b"".join(b"%d\n" % agency for agency in agencies)
        created = self._done.offset == 0 and _size(self._done_file) is None
        try:
            if created:
                self._create_empty(self.done_log_path)  # the file's name made durable once
            self._append(self._done_file, lines)
        except OSError:
            self._done = _DoneLog()  # re-read from the file under the next lock
            if created and _size(self._done_file) == 0:
                with contextlib.suppress(OSError):  # a full disk: leave no trace of the attempt
                    os.unlink(self._done_file)
            raise
        self._done.offset += len(lines)

    def _catch_up(self, *, ledger: bool = True) -> None:
        """This process's memory made the store's state: lock-free when done.log, and if asked the
        ledger and bets.csv, are as this process read them (a stat each), else read under the lock."""
        self._recheck_fault()
        done = self._done
        if (
            not self._round_known
            or not done.legacy_read
            or (_size(self._done_file) or 0) != done.offset
            or (ledger and (_size(self._ledger_file) or 0) != self._index.offset)
            or (ledger and (_size(self._bets_file) or 0) != self._index.end)  # a crashed write to cut off
        ):
            with self._locked():
                pass  # _recover reads the new lines (and repairs a torn tail)

    def _done_count_now(self) -> int:
        self._catch_up(ledger=False)
        return self._done.count

    # -- small file helpers -------------------------------------------------------------

    def _create_empty(self, path: Path) -> None:
        with open(path, "ab") as f:
            os.fsync(f.fileno())
        fsync_dir(self.dir)

    def _replace_json(self, path: Path, value: object) -> None:
        """Write a small JSON file atomically: readers see the old or the new, never half."""
        write_atomically(path, lambda f: f.write(orjson.dumps(value)))

    @staticmethod
    def _append(path: str, data: bytes) -> None:
        with open(path, "ab", buffering=0) as f:
            view = memoryview(data)
            while view:
                view = view[f.write(view) :]
            os.fdatasync(f.fileno())

    def _read_json(self, path: Path, problem: Callable[[object], str | None]) -> Any:
        try:
            return read_json(path, problem)
        except DataCorrupt as error:
            self._fault = str(error)  # also read without the lock: remember it here
            raise

    def _read_winners(self) -> dict[str, Any] | None:
        """The draw's result; read once per process (a failed open until the round is drawn)."""
        if self._draw is None:
            self._draw = self._read_json(self.winners_path, _winners_problem)  # checked there
        return self._draw

    def _counted_winners(self, result: dict[str, Any]) -> int:
        if self._winners_total is None:  # a sum over every agency: once per process
            self._winners_total = sum(len(v) for v in result["winners"].values())
        return self._winners_total

    # -- the Store interface --------------------------------------------------------------

    def append_chunk(self, chunk: Chunk) -> ChunkReceipt:
        """One chunk committed by the calling thread, alone (FileStore's committer batches them)."""
        ticket: ChunkTicket = Ticket(chunk)
        self.commit_chunks([ticket])
        return ticket.outcome()

    def commit_chunks(self, batch: list[ChunkTicket], joining: Callable[[], list[ChunkTicket]] | None = None) -> None:
        """Group commit (FileStore's committer hands the batch): every chunk its process queued
        for this round, under both locks, with one append and one pair of fdatasyncs instead of
        a pair per chunk, which is what makes the disk keep up. Each chunk is still decided on
        its own (replay, closed agency, range conflict). ``joining``: once the locks are held,
        the chunks that arrived while this waited for them, added to ``batch`` (their leaves
        made under the lock)."""
        made = [self._chunk_leaf(ticket.item) for ticket in batch] if self.log is not None else None
        with self._process_turn(), self._file_turn():
            late = joining() if joining is not None else []
            if late:
                batch.extend(late)
                if made is not None:
                    made.extend(self._chunk_leaf(ticket.item) for ticket in late)
            self._commit(batch, made)

    def mark_done(self, agency: int) -> flow.DoneOutcome:
        """Group commit of dones, as of chunks: the thread whose turn it is takes every done its
        process has queued through the round's flow (flow.record_done, one by one, in one
        RoundTxn), and their lines reach done.log in one append and one fdatasync."""
        return self._group_commit(DoneTicket(agency), self._done_queue, self._commit_done)

    def _group_commit(
        self, ticket: Ticket[T, R], queue: list[Ticket[T, R]], commit: Callable[[list[Ticket[T, R]]], None]
    ) -> R:
        def locked_commit(tickets: list[Ticket[T, R]]) -> None:
            with self._file_turn():
                commit(tickets)

        return group_commit(ticket, queue, self._queue_guard, self._process_turn, locked_commit)

    def _commit_done(self, batch: list[DoneTicket]) -> None:
        """Under both locks: each done through the flow, then every new line written at once."""
        txn = self._open_txn()
        decided: list[tuple[DoneTicket, flow.DoneOutcome]] = []
        try:
            for ticket in batch:
                try:
                    decided.append((ticket, flow.record_done(txn, ticket.item)))
                except (StoreError, RoundError) as error:
                    ticket.settle(error)
            txn.flush()  # raises (and every ticket not settled fails) when the lines cannot be written
        except BaseException:
            txn.forget()
            raise
        for ticket, outcome in decided:
            ticket.settle(outcome)

    def _commit(self, batch: list[ChunkTicket], made: list[_Leaf] | None) -> None:
        """Under both locks: decide each chunk, then write the accepted ones in one go. ``made``:
        each chunk's leaf, made before the lock (None where no log is kept)."""
        index = self._index
        ledger_size, bets_size = index.offset, index.end
        result = self._read_winners()  # read, not only seen: a corrupt one is refused
        drawn = result is not None
        log_start = self.log_committed(result) if self.log is not None else 0
        logged: list[bytes] = []  # the accepted chunks' leaves, in order
        done = self._done.agencies
        accepted: list[tuple[ChunkTicket, dict[str, Any]]] = []
        # An answer that rests on a chunk of this very batch (a retry with its key, or an
        # overlap with its range) may only be given once that chunk is on disk.
        deferred: list[tuple[ChunkTicket, ChunkReceipt | StoreError | RoundError]] = []
        batch_keys: set[tuple[int, str]] = set()
        batch_uploads: set[tuple[int, str]] = set()
        for at, ticket in enumerate(batch):
            chunk = ticket.item
            key = (chunk.agency, chunk.idempotency_key) if chunk.idempotency_key is not None else None
            upload = (chunk.agency, chunk.upload.upload_id) if chunk.upload is not None else None
            outcome: ChunkReceipt | StoreError | RoundError | None
            try:
                outcome = flow.decide_chunk(
                    chunk,
                    self.agencies,
                    lambda: self._replay(chunk),  # noqa: B023 - called at once
                    lambda: (drawn, chunk.agency in done),  # noqa: B023 - called at once
                    None if ticket.round is None else (ticket.round, self.current_round),
                )
            except (StoreError, RoundError) as error:
                outcome = error
            if outcome is not None:
                if (key is not None and key in batch_keys) or (upload is not None and upload in batch_uploads):
                    deferred.append((ticket, outcome))
                else:
                    ticket.settle(outcome)
                continue
            record: dict[str, Any] = {
                "a": chunk.agency,
                "n": chunk.count,
                "h": chunk.fingerprint,
                "k": chunk.idempotency_key,
                "end": index.end + len(chunk.payload),
            }
            if chunk.upload is not None:
                record["u"], record["o"], record["d"] = chunk.upload.upload_id, chunk.upload.offset, chunk.digest
            if made is not None:
                record["i"] = log_start + len(logged)
                chunk_leaf, record["s"], auto_key = made[at]
                logged.append(chunk_leaf)
                if auto_key is not None:
                    record["ak"] = auto_key  # so that a leaf a power cut lost can be rebuilt
            index.apply(record)  # provisional, so later chunks of this batch see it (same key twice)
            if key is not None:
                batch_keys.add(key)
            if upload is not None:
                batch_uploads.add(upload)
            accepted.append((ticket, record))
        if not accepted:
            return
        signed = log_start + len(logged)
        if self.log is not None:
            accepted[-1][1]["c"] = signed  # the batch's checkpoint: recovery signs it again if a crash lost it
        lines = b"".join(orjson.dumps(record) + b"\n" for _, record in accepted)
        try:
            self._bets_out.append(b"".join(ticket.item.payload for ticket, _ in accepted), sync=False)
            if self.log is not None:  # the leaves before the ledger line that commits them (and names them: "i")
                # Not synced: a leaf a power cut loses is rebuilt from its ledger line and bets.
                self.log.append(logged, log_start, durable=False)
            self._bets_out.sync()  # the bets on disk before the line that commits them
            # The commit point: until these lines are on disk the bets above do not exist.
            self._ledger_out.append(lines, sync=True)
        except BaseException:
            self._undo_tail(ledger_size, bets_size)
            if self.log is not None:
                self.log.undo(log_start)
            self._index = _LedgerIndex()  # drop the provisional entries: re-read the ledger next time
            raise  # every ticket not settled yet, deferred ones included, gets the error
        index.offset += len(lines)
        if self.log is not None:
            # One checkpoint for the batch, not synced: its size is in the ledger ("c"), and the
            # start-up check signs it again, byte for byte, if a power cut lost it.
            self.log.sign(signed, durable=False)
        for ticket, record in accepted:
            leaf_index = record.get("i")
            leaf = None if leaf_index is None else logged[leaf_index - log_start]
            ticket.settle(
                ChunkReceipt(ticket.item.agency, ticket.item.count, False, leaf_index, record.get("s"), leaf=leaf)
            )
        for ticket, outcome in deferred:
            ticket.settle(outcome)

    def _chunk_leaf(self, chunk: Chunk) -> _Leaf:
        """The chunk's leaf in this round, its salt (base64, as the ledger keeps it) and the leaf's
        key when the chunk has no Idempotency-Key (drawn here). Nothing in it depends on where
        the chunk lands, so it is made before the lock (a tenth of a one-bet chunk's time in it)."""
        salt = chunk.salt if chunk.salt is not None else leaves.new_salt()
        digest = chunk.leaf_digest if chunk.leaf_digest is not None else leaves.chunk_digest(salt, chunk.payload)
        key, auto = chunk.idempotency_key, None
        if key is None:
            key = auto = "auto-" + secrets.token_hex(16)
        return leaves.ChunkStored(self.round_id, chunk.agency, key, chunk.count, digest).bytes(), b64.encode(salt), auto

    def _replay(self, chunk: Chunk) -> ChunkReceipt | None:
        """Answer a retry from the ledger; raise if the retry does not match what was stored."""
        index = self._index
        if chunk.idempotency_key is not None:
            stored = index.keys.get((chunk.agency, chunk.idempotency_key))
            replay = replay_by_key(chunk, None if stored is None else stored[:2])
            if replay is not None:
                return _with_log(replay, stored[2] if stored is not None else None)
        if chunk.upload is not None:
            spans = index.spans.get((chunk.agency, chunk.upload.upload_id))
            if spans is None:
                return None
            found = spans.neighbour(chunk.upload.offset + chunk.count)
            replay = replay_by_range(chunk, found, spans.ranges)
            return None if replay is None else _with_log(replay, found[0][4])
        return None

    def _undo_tail(self, ledger_size: int, bets_size: int) -> None:
        """Best effort after a failed write: put both files back to the last commit.

        The ledger goes first: a ledger line whose bets were cut off would make the store
        refuse to serve. So if the ledger cannot be cut, bets.csv is left alone: the next
        _recover either finds the ledger line whole (the chunk is committed after all) or
        torn, and then cuts both itself.
        """
        for path, size in ((self.ledger_path, ledger_size), (self.bets_path, bets_size)):
            try:
                with open(path, "r+b") as f:
                    f.truncate(size)
            except OSError:
                return

    @contextmanager
    def txn(self) -> Iterator[_FilesTxn]:
        """The round under its lock, every file checked, as the flow's RoundTxn."""
        with self._locked():
            txn = self._open_txn()
            try:
                yield txn
                txn.flush()
            except BaseException:
                txn.forget()
                raise

    def _open_txn(self) -> _FilesTxn:
        """Under the lock."""
        self._verify()  # winners.json too, before done.log is written
        return _FilesTxn(self)

    def published(self, agency: int) -> flow.Published:
        self._recheck_fault()
        result = self._read_winners()  # lock-free: the file is replaced atomically
        mine = None if result is None else rules.agency_winners(result["winners"], agency)
        return flow.Published(self.round_id, self.agencies, mine, self._done_count_now)

    def info(self) -> RoundInfo:
        """This round's parameters and state (never draws). Lock-free as read_status: every
        agency or page asking at once does not queue every worker on the round's lock."""
        self._catch_up()
        done = self._done.count
        bets = self._index.bets
        result = self._read_winners()  # lock-free: the file is replaced atomically
        recorded = self._recorded
        winners = None if result is None else self._counted_winners(result)
        drawn_at = None
        if result is not None:
            drawn_at = result.get("drawn_at") or _iso(self.winners_path.stat().st_mtime)  # an older release: mtime
        number = result["winning_number"] if result is not None else self.winning_number
        return RoundInfo(
            self.round_id,
            self.agencies,
            number,
            bool(recorded.get("random")),
            done,
            bets,
            winners,
            recorded.get("opened_at"),
            drawn_at,
            None if self.log is None else _round_log(recorded, result),
        )

    def export(self, out: BinaryIO) -> int:
        """The committed part of bets.csv to ``out`` (committed bytes never change: copied
        after the lock is let go); the bets written."""
        with self._locked():
            self._verify()
            end, bets = self._index.end, self._index.bets
        with open(self.bets_path, "rb") as source:
            while end > 0:
                block = source.read(min(end, EXPORT_BLOCK))
                if not block:
                    raise DataCorrupt(f"{self.bets_path} is shorter than its ledger says")
                out.write(block)
                end -= len(block)
        return bets

    def done_after(self, agency: int, limit: int) -> list[int]:
        """Lock-free as read_status: this process's done set, caught up with done.log (a stat)."""
        self._catch_up(ledger=False)
        return self._done.after(agency, limit, self.agencies)

    def read_status(self) -> RoundStatus:
        """Lock-free when nothing was committed since this process last read the files: a status
        asked by every agency at once does not queue every worker on the lock."""
        self._catch_up()
        drawn = self._read_winners() is not None  # lock-free: the file is replaced atomically
        return RoundStatus(self.agencies, self._done.count, drawn, self._index.bets, self.round_id)

    def upload_state(self, agency: int, upload_id: str) -> UploadState:
        with self._locked():
            self._verify()  # an upload's progress needs only the ledger, but no answer comes from a corrupt store
            spans = self._index.spans.get((agency, upload_id))
            return UploadState(upload_id, spans.stored() if spans is not None else ())

    def uploads(self, agency: int) -> list[UploadSummary]:
        with self._locked():
            self._verify()
            index = self._index  # the agency's own uploads: not a walk over every agency's
            summaries = []
            for upload_id in index.uploads_of.get(agency, ()):
                spans = index.spans[(agency, upload_id)]
                summaries.append(UploadSummary(upload_id, sum(e - s for s, e, *_ in spans), len(spans)))
            return summaries

    def check_health(self) -> None:
        self._recheck_fault()
        try:
            unread = self.ledger_path.stat().st_size != self._index.offset
        except OSError:
            unread = False  # no ledger to read (the dir is gone?): the write below tells what is wrong
        if unread:  # other processes committed since: read it, so a corrupt line is reported here too
            with self._locked():
                self._verify()
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".health.")
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(tmp)
        except OSError as error:
            raise StorageUnavailable(f"data dir {self.dir} is not writable: {error.strerror or error}") from None

    def agency_stats(self) -> RoundStats:
        """Per-agency bets, chunks and last activity from the ledger index: no read of bets.csv.

        Read-only (never draws). Last activity is when this process first saw the chunk in
        the ledger: within a moment of the commit while it serves, its start time after a restart.
        """
        with self._locked():
            agencies = {
                a: AgencyStats(a, bets, chunks, seen) for a, (bets, chunks, seen) in self._index.by_agency.items()
            }
            done = self._done.sorted()
        try:  # lock-free: the file is replaced atomically; its mtime is the draw's time
            drawn_at = self.winners_path.stat().st_mtime
            result = self._read_winners()
        except FileNotFoundError:
            drawn_at, result = None, None
        winners = {int(a): len(docs) for a, docs in result["winners"].items()} if result else None
        return RoundStats(self.agencies, done, agencies, drawn_at if result else None, winners)


class _FilesTxn:
    """The flow's RoundTxn over one round's files, while its lock is held (RoundFiles.txn)."""

    def __init__(self, files: RoundFiles):
        self.files = files
        self.round_id = files.round_id
        self.params = RoundParameters(files.agencies, files.winning_number)
        self._pending: list[int] = []  # done agencies not written yet (flush writes them at once)
        self._closing: tuple[int, flow.LogClose] | None = None  # the close leaf appended, not committed yet

    def drawn(self) -> bool:
        return self.files._read_winners() is not None

    def done_count(self) -> int:
        return self.files._done.count

    def add_done(self, agency: int) -> bool:
        done = self.files._done
        if agency in done.agencies:
            return False
        done.add(agency, self.params.agencies)  # provisional until flush: counted by the next add_done
        self._pending.append(agency)
        return True

    def forget(self) -> None:
        """After a failure: the provisional dones go (done.log is read again under the next lock),
        and so does a close leaf the failed draw appended."""
        if self._pending:
            self._pending = []
            self.files._done = _DoneLog()
        if self._closing is not None and self.files.log is not None:
            self.files.log.undo(self._closing[0])
            self._closing = None

    def flush(self) -> None:
        """The pending dones on disk (one append, one fdatasync): before their answers, and before a draw."""
        if self._pending:
            pending, self._pending = self._pending, []
            self.files._write_done(pending)

    def bets(self) -> int:
        return self.files._index.bets

    def winning_bets(self, number: int) -> dict[int, list[str]]:
        return scan_winners(self.files.bets_path, self.files._index.end, number)

    def close_log(self) -> flow.LogClose | None:
        """The round's close leaf appended: the tree it ends, and the seed committed at the opening."""
        files, index = self.files, self.files._index
        if files.log is None:
            return None
        committed = files.log_committed()
        last = index.log_next - 1 if index.log_chunks else None
        leaf = leaves.RoundClosed(self.round_id, index.log_chunks, index.log_bets, last)
        at = files.log.append([leaf.bytes()], committed)
        seed = files._opened[1]
        closing = flow.LogClose(files.log.origin, at + 1, files.log.root(at + 1), b64.decode(seed) if seed else None)
        self._closing = (committed, closing)
        return closing

    def save_draw(self, number: int, bets: int, winners: dict[str, list[str]]) -> None:
        self.flush()  # a drawn round has every done on disk
        record: dict[str, Any] = {"winning_number": number, "bets": bets, "winners": winners, "drawn_at": _now()}
        closing = self._closing[1] if self._closing is not None else None
        if closing is not None:
            seed = None if closing.seed is None else b64.encode(closing.seed)
            record["log"] = {
                "closed": closing.size - 1,
                "size": closing.size,
                "root": b64.encode(closing.root),
                "seed": seed,
            }
        self.files._replace_json(self.files.winners_path, record)  # the commit point of the close leaf
        self.files._draw = record
        if closing is not None and self.files.log is not None:
            self._closing = None
            self.files.log.sign(closing.size)


def _round_log(recorded: dict[str, Any], result: dict[str, Any] | None) -> RoundLog:
    """A round's leaves as round.json and winners.json record them; a random round's commitment
    from its private seed (the seed itself only once the draw published it)."""
    seed = recorded.get("seed")
    closed = None if result is None else result.get("log")
    draw = None
    if isinstance(closed, dict):
        shown = closed.get("seed")
        draw = RoundDraw(b64.decode(shown) if shown else None, closed["size"], b64.decode(closed["root"]))
    return RoundLog(
        recorded.get("log_opened"),
        closed["closed"] if isinstance(closed, dict) else None,
        committed_draw.seed_commitment(b64.decode(seed)) if seed else None,
        draw,
    )


def _with_log(receipt: ChunkReceipt, logged: tuple[int, str] | None) -> ChunkReceipt:
    """A replay's receipt with the leaf the chunk got when first stored."""
    return receipt if logged is None else dataclasses.replace(receipt, log_index=logged[0], salt=logged[1])


def _step(name: str) -> None:
    """Between two steps of the take-over; tests replace it to simulate a crash at each step."""


def _unlink_if_same(path: Path, twin: Path) -> bool:
    """Remove ``path`` when it is a second name (hard link) of ``twin``; False when it is another file."""
    try:
        if os.path.samefile(path, twin):
            path.unlink()
            return True
    except FileNotFoundError:
        return True
    return False


def take_over(data_dir: Path, settings: RoundParameters, translog: TransparencyLog | None = None) -> None:
    """Under the data dir's lock: make sure ``rounds/`` exists, taking over a one-round data dir.

    A data dir of the one-round release holds its files at the top. They become round 1 byte for
    byte, without a copy: each gets a second name (a hard link) in ``.rounds.new/0001/``, which
    is then renamed to ``rounds/`` in one step; only then do the old names go. A crash before
    the rename leaves the old layout (and a staging dir that the next start removes); after
    it, the new one (and old names the next start removes, once it checked they are the same
    files). A fresh data dir gets round 1 with the settings the same way.
    """
    data_dir = Path(data_dir)
    rounds, staging = data_dir / ROUNDS, data_dir / STAGING
    legacy = [name for name in LEGACY if (data_dir / name).exists()]
    if rounds.is_dir():
        first = round_dir(data_dir, 1)
        for name in legacy:  # names left by a take-over that crashed after its rename
            if not _unlink_if_same(data_dir / name, first / name):
                log.warning("action: toma_de_datos | result: fail | detail: %s is not round 1's; left alone", name)
        if legacy:
            fsync_dir(data_dir)
        return
    if staging.exists():
        shutil.rmtree(staging)  # a take-over that crashed before its rename: start it again
        _step("staging removed")
    first = staging / f"{1:04d}"
    first.mkdir(parents=True)
    _step("staging made")
    for name in legacy:
        os.link(data_dir / name, first / name)
        _step(f"linked {name}")
    opened = None
    if not legacy:
        # A new data dir: round 1 opens in the log as its first leaf (committed by the rename below).
        opened = None if translog is None else open_in_log(translog, 1, settings, 0)
        record = round_record(1, settings, None, opened)
        write_atomically(first / ROUND, lambda f: f.write(orjson.dumps(record)))
    fsync_dir(first)
    fsync_dir(staging)
    _step("staging synced")
    os.rename(staging, rounds)  # the commit: from here on the data dir has the new layout
    fsync_dir(data_dir)
    _step("renamed")
    if opened is not None and translog is not None:
        translog.sign(opened[0] + 1)
    for name in legacy:
        (data_dir / name).unlink()
        _step(f"unlinked {name}")
    fsync_dir(data_dir)
    if legacy:
        log.info("action: toma_de_datos | result: success | ronda: 1 | archivos: %s", " ".join(legacy))


class FileStore(flow.RoundFlow):
    """Every round of one data dir: ``rounds/0001/``, ``rounds/0002/``, ... each a :class:`RoundFiles`.

    The newest round is the current one. Each round has its own lock, so a round's writes and
    its draw never wait for another round; the data dir's ``.lock`` orders only the take-over
    and the opening of a round.
    """

    winners_poll_interval = RoundFiles.winners_poll_interval

    def __init__(
        self,
        data_dir: Path,
        agencies: int,
        winning_number: int | None,
        lock_timeout: float = 30.0,
        *,
        log_key: Path | None = None,
        log_origin: str = DEFAULT_LOG_ORIGIN,
    ):
        self.dir = Path(data_dir)
        self.settings = RoundParameters(agencies, winning_number)  # for a round that opens now
        self.lock_timeout = lock_timeout
        self.dir.mkdir(parents=True, exist_ok=True)
        # The service's one transparency log, in <data dir>/log/, signed with the key file
        # (made on first use at its default place, <data dir>/log.key).
        self.log: TransparencyLog | None = TransparencyLog(
            FileLogStorage(self.dir / LOG_DIR, lock_timeout),
            load_signer(log_key or self.dir / LOG_KEY, log_origin, create=log_key is None),
            log_origin,
        )
        self._lock = filelock.FileLock(
            self.dir / LOCK, timeout=lock_timeout, poll_interval=0.002, preserve_lock_file=True
        )
        self._guard = threading.Lock()
        self._rounds: dict[int, RoundFiles] = {}
        self._current = 0
        self._seen_at = 0.0  # time.monotonic() of current_round's last look at the rounds
        self._next_dir: tuple[int, str] | None = None
        # This process's chunks are committed by one thread, a batch at a time (app/store/batch.py).
        self._committer: Committer[Chunk, ChunkReceipt] = Committer(self._commit_chunks, lock_timeout, "files-commit")
        try:
            self._layout()
            self._round(self.current_round())  # opens (and checks) the current round's files now
        except (StorageUnavailable, RoundNotFound) as error:
            log.error("action: abrir_almacenamiento | result: fail | error: %s", error)

    def _layout(self) -> None:
        """rounds/ in place (taking over an old data dir once, whichever worker gets the lock first)."""
        if self._current:
            return
        try:
            with self._lock:
                take_over(self.dir, self.settings, self.log)
        except filelock.Timeout:
            raise StorageBusy("the storage lock was not granted in time; retry shortly") from None
        except OSError as error:
            raise StorageUnavailable(f"cannot prepare the data dir {self.dir}: {error.strerror or error}") from None
        ids = round_ids(self.dir)
        if not ids:
            raise StorageUnavailable(f"{self.dir / ROUNDS} holds no round: restore it or move it away")
        self._current = ids[-1]

    def current_round(self) -> int:
        self._layout()
        if os.path.exists(self._next_round_dir()):  # a stat: another worker opened a round
            self._became_current(round_ids(self.dir)[-1])
        self._seen_at = time.monotonic()
        return self._current

    def _became_current(self, round_id: int) -> None:
        self._current = round_id
        with self._guard:
            past = [found for number, found in self._rounds.items() if number < round_id]
        for found in past:
            found.retire()

    def _next_round_dir(self) -> str:
        """The path a next round would take, kept as text: asked several times per request."""
        cached = self._next_dir
        if cached is None or cached[0] != self._current:
            cached = self._next_dir = (self._current, os.fspath(round_dir(self.dir, self._current + 1)))
        return cached[1]

    def _round(self, round_id: int | None) -> RoundFiles:
        if round_id is None:
            round_id = self.current_round()
        with self._guard:
            found = self._rounds.get(round_id)
            if found is None:
                self._layout()
                if round_id < 1 or not round_dir(self.dir, round_id).is_dir():
                    raise RoundNotFound(f"round {round_id} does not exist: the current round is {self._current}")
                # The settings matter only to round 1 of an old data dir without round.json: pinned to them.
                found = self._rounds[round_id] = RoundFiles(
                    round_dir(self.dir, round_id),
                    self.settings.agencies,
                    self.settings.winning_number,
                    self.lock_timeout,
                    round_id,
                    self.log,
                    self.current_round,
                )
                if round_id < self._current:
                    found.retire()  # a past round, read now and then: no descriptor kept for it
            return found

    def close(self) -> None:
        self._committer.stop()
        with self._guard:
            rounds = list(self._rounds.values())
        for found in rounds:
            found.close()
        if self.log is not None:
            self.log.storage.close()

    def known_agencies(self, round_id: int | None) -> int | None:
        # The edge's pre-check of an agency id (app/deps.round_agencies): the current round as
        # looked at within EDGE_FRESHNESS (the committer looks at every batch) saves a stat per
        # request. It only ever lets an id through to the commit, which decides against the
        # round it reads then; an id outside this count is asked afresh.
        if round_id is None and time.monotonic() - self._seen_at < EDGE_FRESHNESS:
            round_id = self._current
        try:
            found = self._rounds.get(self.current_round() if round_id is None else round_id)
        except (StoreError, RoundError):
            return None
        return None if found is None else found.agencies

    def round_agencies(self, round_id: int | None = None, fresh: bool = False) -> int:  # noqa: ARG002 - always fresh
        return self._round(round_id).agencies

    # -- the Store interface --------------------------------------------------------------

    def append_chunk(self, chunk: Chunk, round: int | None = None) -> ChunkReceipt:
        return self._committer.wait(self._ticket(chunk, round))

    async def store_chunk(self, chunk: Chunk, round: int | None = None) -> ChunkReceipt:
        return await self._committer.submit(self._ticket(chunk, round))

    def _ticket(self, chunk: Chunk, round: int | None) -> ChunkTicket:
        # Ticket, not the ChunkTicket alias: calling a subscripted generic goes through typing's
        # alias call (and its failed __orig_class__ set on a slotted object) per chunk.
        return Ticket(chunk, round)

    def _commit_chunks(self, batch: list[ChunkTicket]) -> None:
        """The committer's turn: each chunk to its round (the current round read once per batch,
        a stat), then each round's chunks committed together. The current round's commit also
        takes, once it holds the lock, the chunks handed over while it waited for it (those of
        another round are committed after it)."""
        current = self.current_round()
        later: dict[int, list[ChunkTicket]] = {}  # joiners that name a past round (a retry, say)

        def joining() -> list[ChunkTicket]:
            later.update(self._by_round(self._committer.take_more(), current))
            return later.pop(current, [])

        self._commit_rounds(self._by_round(batch, current), current, joining)
        self._commit_rounds(later, current, None)

    def _by_round(self, batch: list[ChunkTicket], current: int) -> dict[int, list[ChunkTicket]]:
        """The batch's chunks by the round each goes to; a chunk no round takes is answered now."""
        by_round: dict[int, list[ChunkTicket]] = {}
        for ticket in batch:
            try:
                round_id = flow.target_round(ticket.round, current, writing=True)
            except RoundError as error:
                ticket.settle(error)
                continue
            by_round.setdefault(round_id, []).append(ticket)
        return by_round

    def _commit_rounds(
        self,
        by_round: dict[int, list[ChunkTicket]],
        current: int,
        joining: Callable[[], list[ChunkTicket]] | None,
    ) -> None:
        for round_id, tickets in by_round.items():
            try:
                files = self._round(round_id)
            except (StoreError, RoundError) as error:  # no such round: each request is told so
                for ticket in tickets:
                    ticket.settle(error)
                continue
            try:  # (commit_chunks adds the joining chunks to ``tickets``: receipts and failures reach them too)
                files.commit_chunks(tickets, joining if round_id == current else None)
            except Exception as error:
                fail_unsettled(tickets, error)
            self._add_log_receipts(tickets)

    def _add_log_receipts(self, tickets: list[ChunkTicket]) -> None:
        """Committed and signed: each stored (or replayed) chunk's leaf and a checkpoint, read
        without the round's lock, before its waiter wakes."""
        if self.log is None:
            return
        latest = None  # the latest checkpoint, read once for the batch
        for ticket in tickets:
            receipt = ticket.receipt
            if receipt is not None and receipt.log_index is not None and receipt.salt is not None:
                try:
                    latest = latest or self.log.latest()
                    found = self.log.receipt(receipt.log_index, receipt.salt, receipt.leaf, latest)
                    ticket.receipt = receipt.with_log(found)
                except (StoreError, OSError) as error:
                    ticket.receipt = None
                    ticket.fail(error)

    def mark_done(self, agency: int, round: int | None = None) -> DoneReceipt:
        """The flow's mark_done, with this process's dones written in groups (RoundFiles.mark_done)."""
        round_id = flow.target_round(round, self.current_round(), writing=True)
        return flow.finish_done(*self._round(round_id).mark_done(agency))

    # -- the flow's primitives (app/store/flow.py) ---------------------------------------------

    @contextmanager
    def locked_round(self, round: int | None, *, writing: bool) -> Iterator[flow.RoundTxn]:
        with self._round(flow.target_round(round, self.current_round(), writing=writing)).txn() as txn:
            yield txn

    def published(self, round: int | None, agency: int) -> flow.Published:
        return self._round(round).published(agency)

    def read_status(self, round: int | None) -> RoundStatus:
        return self._round(round).read_status()

    def recorded(self, round: int | None) -> RoundParameters:
        found = self._round(round)
        return RoundParameters(found.agencies, found.winning_number)

    def upload_state(self, agency: int, upload_id: str, round: int | None = None) -> UploadState:
        return self._round(round).upload_state(agency, upload_id)

    def uploads(self, agency: int, round: int | None = None) -> list[UploadSummary]:
        return self._round(round).uploads(agency)

    def agency_stats(self, round: int | None = None) -> RoundStats:
        return self._round(round).agency_stats()

    def check_health(self) -> None:
        self._round(None).check_health()

    def export_bets(self, out: BinaryIO, round: int | None = None) -> tuple[int, int]:
        found = self._round(round)
        return found.round_id, found.export(out)

    def draw_marker(self, round_id: int) -> str | None:
        return os.fspath(round_dir(self.dir, round_id) / WINNERS)  # written (atomically) by the draw

    def round_info(self, round: int | None = None) -> RoundInfo:
        return self._round(round).info()

    def done_agencies(self, after: int, limit: int, round: int | None = None) -> list[int]:
        return self._round(round).done_after(after, limit)

    def rounds(self, limit: int = 20, before: int | None = None) -> list[RoundInfo]:
        """The rounds are 1..current (each opened as the one after the newest): the page's ids are
        counted down from there, not found by listing rounds/ (a listing per request: O(rounds))."""
        newest = self.current_round() if before is None else min(before - 1, self.current_round())
        return [self._round(r).info() for r in range(newest, max(newest - limit, 0), -1)]

    def create_round(self, params: RoundParameters) -> int:
        try:
            with self._lock:  # one opening at a time; a second one finds the new round open
                current = round_ids(self.dir)[-1]
                previous = self._round(current)
                rules.refuse_next_round(current, previous.info().drawn)
                new = current + 1
                staging = self.dir / ROUNDS / f".{new:04d}.new"
                if staging.exists():
                    shutil.rmtree(staging)  # an opening that crashed half-way
                staging.mkdir()
                opened = None
                if self.log is not None:  # its leaf after the drawn round's: committed by the rename below
                    opened = open_in_log(self.log, new, params, previous.committed_leaves())
                record = round_record(new, params, None, opened)
                write_atomically(staging / ROUND, lambda f: f.write(orjson.dumps(record)))
                fsync_dir(staging)
                os.rename(staging, round_dir(self.dir, new))  # the round exists, whole, from here on
                fsync_dir(self.dir / ROUNDS)
                if opened is not None and self.log is not None:
                    self.log.sign(opened[0] + 1)
        except filelock.Timeout:
            raise StorageBusy("the storage lock was not granted in time; retry shortly") from None
        except OSError as error:
            raise StorageUnavailable(f"cannot open a round: {error.strerror or error}") from None
        self._became_current(new)
        return new


def scan_winners(path: Path, end: int, winning_number: int) -> dict[int, list[str]]:
    """Winning documents per agency, in file order, reading only the first ``end`` bytes.

    The number is the last field and is written as a bare integer, and no field may hold a
    newline, so a bet wins exactly when its line ends in ``,<winning number>\\n``. Searching
    for those bytes skips parsing the millions of losing lines; only a winner's line goes
    through the csv module. Memory stays at one block whatever the file's size.
    """
    needle = f",{winning_number}\n".encode()
    winners: dict[int, list[str]] = defaultdict(list)
    if end == 0:  # a round without bets: bets.csv may not even exist
        return {}
    position = 0
    with open(path, "rb") as f:
        while position < end:
            block = f.read(min(SCAN_BLOCK, end - position))
            # Work up to the block's last newline; the partial line after it is read again
            # with the next block (a seek, not a copy, keeps memory at one block).
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                raise StorageUnavailable(f"{path.name}: a line at byte {position} is longer than {SCAN_BLOCK} bytes")
            hit = block.find(needle, 0, cut)
            while hit != -1:
                start = block.rfind(b"\n", 0, hit) + 1
                row = next(csv.reader([block[start : hit + len(needle) - 1].decode("utf-8")]))
                winners[int(row[0])].append(row[3])
                hit = block.find(needle, hit + len(needle), cut)
            position += cut
            f.seek(position)
    return dict(winners)
