"""A round's lock across processes: filelock's lock on a descriptor this process keeps open.

Every group commit takes the round's lock. ``filelock.FileLock`` costs ~85 µs of CPU per
acquire and release (filelock 4.3: the path resolved, its directory made, the file opened and
closed, fork and thread bookkeeping: some 500 Python calls), a tenth of a small chunk's whole
cost (docs/performance.md). ``filelock.lock_descriptor`` takes the same ``flock`` on a
descriptor the caller keeps, in ~2 µs. What FileLock did besides is done here:

- a timeout, polling as FileLock polls (but from a short first pause, doubled up to its interval);
- the descriptor is this process's: a forked child opens its own (a ``flock`` belongs to the
  open file, which a fork shares, so parent and child would not exclude each other);
- the lock file is the one at the path: one deleted or replaced by hand is noticed after each
  acquire and the descriptor reopened, so two processes never lock two different files.

Threads of one process must not use one lock at once (the round's thread lock orders them).
"""

from __future__ import annotations

import os
import time

import filelock

# The first wait for a lock another process holds: a group commit holds it for about one
# fdatasync pair (a few hundred µs), so polling every ``poll_interval`` (2 ms) from the start
# left it free most of each wait; the pause doubles up to ``poll_interval``.
FIRST_POLL = 0.0001


class ProcessLock:
    """An exclusive lock between processes on the file at ``path`` (created if missing)."""

    def __init__(self, path: str, timeout: float, poll_interval: float = 0.002):
        self.path = path
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._fd: int | None = None
        self._pid = 0  # the process that opened _fd

    def _descriptor(self) -> int:
        if self._fd is not None and self._pid != os.getpid():
            self._forget()  # a fork's copy: lock through a descriptor of this process's own
        if self._fd is None:
            # Read-only: a flock needs no more, and a descriptor open for writing would keep the
            # volume from being remounted read-only while the server runs.
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> None:
        """Wait for the lock: ``filelock.Timeout`` after ``timeout`` seconds, OSError when it cannot be taken."""
        deadline = time.monotonic() + self.timeout
        pause = FIRST_POLL
        while True:
            fd = self._descriptor()
            if filelock.lock_descriptor(fd, blocking=False):
                try:
                    at_path = self._is_at_path(fd)
                except BaseException:
                    filelock.unlock_descriptor(fd)  # never left held by an acquire that failed
                    raise
                if at_path:
                    return
                filelock.unlock_descriptor(fd)  # a lock on a file nobody else will open: take the new one
                self._forget()
                continue
            if time.monotonic() >= deadline:
                raise filelock.Timeout(self.path)
            time.sleep(pause)
            pause = min(pause * 2, self.poll_interval)

    def _is_at_path(self, fd: int) -> bool:
        held = os.fstat(fd)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (held.st_ino, held.st_dev) == (current.st_ino, current.st_dev)

    def release(self, *, close: bool = False) -> None:
        """Let the next process in; ``close`` also closes the descriptor (not kept for next time)."""
        if self._fd is None:
            return
        try:
            filelock.unlock_descriptor(self._fd)
        finally:
            if close:
                self._forget()

    def close(self) -> None:
        """Close the descriptor (never while the lock is held: closing it would release it)."""
        self._forget()

    def _forget(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
