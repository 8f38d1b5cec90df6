"""The transparency log's files in ``<data dir>/log/`` (docs/transparency.md, "On disk").

``leaves``       slot i at byte 512·i: u16be length ‖ the leaf's bytes ‖ zero padding. Fixed
                 slots make reading any leaf one seek (GET /log/entries, a receipt) with a single
                 file to append per commit. A size that is not a whole number of slots is a
                 crashed append: the partial slot is not a leaf.
``checkpoints``  one JSON line per signed checkpoint, ``{"size": N, "note": "<signed note>"}``, in
                 increasing size; every checkpoint ever handed out stays here (or is signed
                 again, byte for byte, after a power cut: docs/transparency.md, "Recovery").
``.lock``        the log's lock, taken inside a round's lock (never the other way round).

This module only persists; what is committed, what is signed and when is the log's
(app/store/txlog.py) and the round's files' (app/store/files.py) business.
"""

from __future__ import annotations

import bisect
import os
import threading
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock
import orjson

from app.atomicfile import write_atomically
from app.store.appendfile import AppendFile
from app.store.base import DataCorrupt, StorageBusy, StorageUnavailable
from app.store.lock import ProcessLock

SLOT = 512
MAX_LEAF = SLOT - 2  # the longest leaf (a chunk with a 255-character key) is about 400 bytes
LEAVES = "leaves"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class FileLogStorage:
    """The log's two files, and what this process has read of the checkpoints file."""

    def __init__(self, directory: Path, lock_timeout: float = 30.0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._leaves = os.fspath(self.dir / LEAVES)
        self._checkpoints = os.fspath(self.dir / CHECKPOINTS)
        self._lock = ProcessLock(os.fspath(self.dir / LOCK), lock_timeout)
        # The log's files are never replaced while the service runs: one descriptor each, kept.
        self._leaves_out = AppendFile(self._leaves)
        self._checkpoints_out = AppendFile(self._checkpoints)
        self._read_guard = threading.Lock()
        # The checkpoints read so far: sizes and byte offsets, increasing (16 bytes each).
        self._sizes = array("Q")
        self._offsets = array("Q")
        self._read_to = 0
        self._latest: tuple[int, bytes] | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise StorageBusy("the log's lock was not granted in time; retry shortly") from None
        except OSError as error:
            raise StorageUnavailable(f"cannot lock the log: {error.strerror or error}") from None
        try:
            yield
        finally:
            self._lock.release(close=False)
            # Never left open for writing between turns: it would keep the volume from being
            # remounted read-only while the server runs.
            self._leaves_out.close()
            self._checkpoints_out.close()

    def close(self) -> None:
        self._lock.close()
        self._leaves_out.close()
        self._checkpoints_out.close()

    # -- leaves ---------------------------------------------------------------------------

    def leaf_count(self) -> int:
        """Whole slots on disk (a partial last slot is a crashed append: not counted)."""
        return self._leaves_out.size() // SLOT

    def read_slots(self, start: int, end: int) -> list[bytes | None]:
        """Slots ``[start, end)`` as they are, for the start-up check: a slot that holds no leaf
        (zeros a power cut left, a partial last slot) or is past the file's end is None."""
        with open(self._leaves, "rb") as f:
            f.seek(start * SLOT)
            data = f.read(max(0, end - start) * SLOT)
        found: list[bytes | None] = []
        for at in range(0, (end - start) * SLOT, SLOT):
            length = int.from_bytes(data[at : at + 2], "big") if at + SLOT <= len(data) else 0
            found.append(data[at + 2 : at + 2 + length] if 0 < length <= MAX_LEAF else None)
        return found

    def write_slots(self, slots: dict[int, bytes]) -> None:
        """Leaves written into their slots and on disk (the start-up check's repair of leaves a
        power cut lost, rebuilt from what commits them)."""
        with open(self._leaves, "r+b" if os.path.exists(self._leaves) else "w+b") as f:
            for index in sorted(slots):
                f.seek(index * SLOT)
                f.write(_slot(slots[index]))
            f.flush()
            os.fsync(f.fileno())

    def read_leaves(self, start: int, end: int) -> list[bytes]:
        if start >= end:
            return []
        with open(self._leaves, "rb") as f:
            f.seek(start * SLOT)
            data = f.read((end - start) * SLOT)
        if len(data) < (end - start) * SLOT:
            raise DataCorrupt(f"{self._leaves} holds {len(data) // SLOT + start} leaves, fewer than {end}")
        found = []
        for at in range(0, len(data), SLOT):
            length = int.from_bytes(data[at : at + 2], "big")
            if not 0 < length <= MAX_LEAF:
                raise DataCorrupt(f"{self._leaves}: slot {start + at // SLOT} (byte {start * SLOT + at}) holds no leaf")
            found.append(data[at + 2 : at + 2 + length])
        return found

    def append_leaves(self, leaves: list[bytes], *, durable: bool = True) -> None:
        """Under the lock: the leaves' slots appended; ``durable``: and on disk (one fdatasync)."""
        self._leaves_out.append(b"".join(_slot(leaf) for leaf in leaves), sync=durable)

    def truncate_leaves(self, count: int) -> None:
        with open(self._leaves, "r+b") as f:
            f.truncate(count * SLOT)
            os.fsync(f.fileno())

    # -- checkpoints ----------------------------------------------------------------------

    def append_checkpoint(self, size: int, note: bytes, *, durable: bool = True) -> None:
        """Under the lock, after read_checkpoints: the signed checkpoint appended (``durable``: and
        on disk) and known to this process without reading it back."""
        line = orjson.dumps({"size": size, "note": note.decode("utf-8")}) + b"\n"
        with self._read_guard:
            on_disk = self._checkpoints_out.size()
            if on_disk > self._read_to:  # a line torn by a crash mid-append: never a checkpoint
                os.truncate(self._checkpoints, self._read_to)
            self._checkpoints_out.append(line, sync=durable)
            self._sizes.append(size)
            self._offsets.append(self._read_to)
            self._read_to += len(line)
            self._latest = (size, note)

    def sync_checkpoints(self) -> None:
        self._checkpoints_out.sync()

    def rewrite_checkpoints(self, checkpoints: dict[int, bytes]) -> None:
        """The whole file anew, in increasing size, replaced atomically (the start-up check, when
        a power cut lost a line before others that stayed)."""
        lines = b"".join(
            orjson.dumps({"size": size, "note": checkpoints[size].decode("utf-8")}) + b"\n"
            for size in sorted(checkpoints)
        )
        write_atomically(Path(self._checkpoints), lambda f: f.write(lines))
        self._checkpoints_out.close()
        with self._read_guard:
            self._sizes, self._offsets, self._read_to, self._latest = array("Q"), array("Q"), 0, None

    def read_checkpoints(self) -> tuple[int, bytes] | None:
        """The latest checkpoint (size, note), reading only the lines added since the last call."""
        with self._read_guard:
            # The size read under the guard: read before it, another thread's append could move
            # _read_to past it and a checkpoint would look removed (DataCorrupt, a 503).
            size = _size(self._checkpoints)
            if size < self._read_to:
                raise DataCorrupt(f"{self._checkpoints} is shorter than it was: a checkpoint was removed")
            if size == self._read_to:
                return self._latest
            with open(self._checkpoints, "rb") as f:
                f.seek(self._read_to)
                data = f.read(size - self._read_to)
            position, complete = 0, data.rfind(b"\n") + 1
            while position < complete:
                newline = data.index(b"\n", position)
                at = self._read_to + position
                size_read, note = self._parse(data[position:newline], at)
                self._sizes.append(size_read)
                self._offsets.append(at)
                self._latest = (size_read, note)
                position = newline + 1
            self._read_to += complete
            return self._latest

    def _parse(self, line: bytes, at: int, *, in_order: bool = True) -> tuple[int, bytes]:
        try:
            record = orjson.loads(line)
            size, note = record["size"], record["note"].encode("utf-8")
            if type(size) is not int or size < 1 or (in_order and self._sizes and size <= self._sizes[-1]):
                raise ValueError("sizes are whole numbers, increasing")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as error:
            raise DataCorrupt(
                f"{self._checkpoints}: the line at byte {at} is not a checkpoint record ({error})"
            ) from None
        return size, note

    def checkpoint(self, size: int) -> bytes | None:
        """The checkpoint of exactly ``size``, if one was signed: a bisection and one read."""
        self.read_checkpoints()
        with self._read_guard:
            at = bisect.bisect_left(self._sizes, size)
            if at == len(self._sizes) or self._sizes[at] != size:
                return None
            offset = self._offsets[at]
        with open(self._checkpoints, "rb") as f:
            f.seek(offset)
            return self._parse(f.readline().rstrip(b"\n"), offset, in_order=False)[1]

    def cut_torn_checkpoint(self) -> bool:
        """The start-up check: a last line without its newline (a power cut mid-append) cut off."""
        self.read_checkpoints()
        if _size(self._checkpoints) > self._read_to:
            with open(self._checkpoints, "r+b") as f:
                f.truncate(self._read_to)
                os.fsync(f.fileno())
            return True
        return False

    def checkpoint_sizes(self) -> list[int]:
        self.read_checkpoints()
        with self._read_guard:
            return list(self._sizes)


def _slot(leaf: bytes) -> bytes:
    if not 0 < len(leaf) <= MAX_LEAF:
        raise ValueError(f"a leaf is 1 to {MAX_LEAF} bytes (got {len(leaf)})")
    return len(leaf).to_bytes(2, "big") + leaf + bytes(SLOT - 2 - len(leaf))
