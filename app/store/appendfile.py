"""A file the store only appends to, through a descriptor of its own process.

A commit appends to bets.csv, the ledger and the log's leaves and checkpoints: ``os.open``
with ``O_APPEND``, ``os.write``, no lseek or fstat as Python's ``open`` adds. The store closes
it at the end of each turn at the lock (``close``): a descriptor open for writing between
turns keeps the volume from being remounted read-only (tests/faults/test_disk.py), and
keeping it across turns saved only an open and a close per file. Within its life:

- ``O_APPEND``: every write lands at the file's end as it is *now*, so a truncation by the
  store (a crashed writer's tail cut) needs no reopen;
- the descriptor is this process's (a fork's copy is dropped: its file offset would be shared);
- a file replaced at its path (a new inode: restored by hand, or made anew) is noticed by the
  caller's stat (``follow``) and reopened, so a write never lands in a file nobody reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.atomicfile import fsync_dir


class AppendFile:
    """Appends to the file at ``path`` (created on the first write, its name then made durable)."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._inode: tuple[int, int] | None = None

    def _descriptor(self) -> int:
        if self._fd is not None and self._pid != os.getpid():
            self._pid = os.getpid()
            self.close()  # a fork's copy (the parent's stays open): this process opens its own
        if self._fd is None:
            created = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if created:
                try:
                    os.fsync(fd)
                    fsync_dir(Path(self.path).parent)
                except BaseException:
                    os.close(fd)
                    raise
            held = os.fstat(fd)
            self._fd, self._pid, self._inode = fd, os.getpid(), (held.st_dev, held.st_ino)
        return self._fd

    def follow(self, found: os.stat_result | None) -> None:
        """The caller's stat of the path (None: no file there): a replaced file is reopened on the
        next write, a removed one made anew."""
        if self._fd is not None and (found is None or (found.st_dev, found.st_ino) != self._inode):
            self.close()

    def size(self) -> int:
        """The file's size through the descriptor (an fstat: no path to resolve)."""
        return os.fstat(self._descriptor()).st_size

    def append(self, data: bytes, *, sync: bool) -> None:
        """``data`` at the file's end; ``sync``: and on disk (fdatasync) before this returns."""
        fd = self._descriptor()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fdatasync(fd)

    def sync(self) -> None:
        os.fdatasync(self._descriptor())

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._pid == os.getpid():
            try:
                os.close(fd)
            except OSError:
                pass
