"""The transparency log's files in ``<data dir>/log/`` (docs/transparency.md, "On disk").

``leaves``       slot i at byte 512·i: u16be length ‖ the leaf's bytes ‖ zero padding. Fixed
                 slots make reading any leaf one seek (GET /log/entries, a receipt) with a single
                 file to append and fdatasync per commit. A size that is not a whole number of
                 slots is a crashed append: the partial slot is not a leaf.
``checkpoints``  one JSON line per signed checkpoint, ``{"size": N, "note": "<signed note>"}``, in
                 increasing size; every checkpoint ever handed out stays here.
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

from app.atomicfile import fsync_dir
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

    def close(self) -> None:
        self._lock.close()

    # -- leaves ---------------------------------------------------------------------------

    def leaf_count(self) -> int:
        """Whole slots on disk (a partial last slot is a crashed append: not counted)."""
        return _size(self._leaves) // SLOT

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

    def append_leaves(self, leaves: list[bytes]) -> None:
        """Under the lock: the leaves' slots appended and on disk (one fdatasync)."""
        slots = bytearray()
        for leaf in leaves:
            if not 0 < len(leaf) <= MAX_LEAF:
                raise ValueError(f"a leaf is 1 to {MAX_LEAF} bytes (got {len(leaf)})")
            slots += len(leaf).to_bytes(2, "big") + leaf + bytes(SLOT - 2 - len(leaf))
        created = not os.path.exists(self._leaves)
        with open(self._leaves, "ab", buffering=0) as f:
            view = memoryview(slots)
            while view:
                view = view[f.write(view) :]
            os.fdatasync(f.fileno())
        if created:
            fsync_dir(self.dir)

    def truncate_leaves(self, count: int) -> None:
        with open(self._leaves, "r+b") as f:
            f.truncate(count * SLOT)
            os.fsync(f.fileno())

    # -- checkpoints ----------------------------------------------------------------------

    def append_checkpoint(self, size: int, note: bytes) -> None:
        """Under the lock, after read_checkpoints: the signed checkpoint appended and on disk."""
        line = orjson.dumps({"size": size, "note": note.decode("utf-8")}) + b"\n"
        created = not os.path.exists(self._checkpoints)
        with open(self._checkpoints, "ab", buffering=0) as f:
            f.write(line)
            os.fdatasync(f.fileno())
        if created:
            fsync_dir(self.dir)
        self.read_checkpoints()

    def read_checkpoints(self) -> tuple[int, bytes] | None:
        """The latest checkpoint (size, note), reading only the lines added since the last call."""
        size = _size(self._checkpoints)
        with self._read_guard:
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

    def checkpoint_sizes(self) -> list[int]:
        self.read_checkpoints()
        with self._read_guard:
            return list(self._sizes)
