"""A round's lock across processes: filelock's lock on a descriptor this process keeps open.

Every group commit takes the round's lock. ``filelock.FileLock`` costs ~85 µs of CPU per
acquire and release (filelock 4.3: the path resolved, its directory made, the file opened and
closed, fork and thread bookkeeping: some 500 Python calls), a tenth of a small chunk's whole
cost (docs/performance.md). ``filelock.lock_descriptor`` takes the same ``flock`` on a
descriptor the caller keeps, in ~2 µs. What FileLock did besides is done here:

- a timeout, polling as FileLock polls (but from a short first pause, doubled up to its interval);
- turns in order: a process that lets the lock go and asks again at once (a committer with
  its next batch ready) took it back before a poller woke, for up to 463 ms on end (one-bet
  POSTs, two workers: p99 270-460 ms). So a waiter first takes a second lock, the door
  (``<path>.door``), and holds it while it waits for the lock itself: whoever comes back
  after letting the lock go waits at the door, so the waiter is next (two flock calls more
  per acquire, ~2 µs);
- the descriptor is this process's: a forked child opens its own (a ``flock`` belongs to the
  open file, which a fork shares, so parent and child would not exclude each other);
- the lock file is the one at the path: one deleted or replaced by hand is noticed after each
  acquire and the descriptor reopened, so two processes never lock two different files.

Threads of one process must not use one lock at once (the round's thread lock orders them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import filelock

# The first wait for a lock another process holds: a group commit holds it for about one
# fdatasync pair (a few hundred µs), so polling every ``poll_interval`` (2 ms) from the start
# left it free most of each wait; the pause doubles up to ``poll_interval``.
FIRST_POLL = 0.0001
# The door's holder is next: it polls the lock itself at this pace at most, so the lock stays
# free no longer than this between two holders (the others wait for the door meanwhile).
NEXT_POLL = 0.0002


class ProcessLock:
    """An exclusive lock between processes on the file at ``path`` (created if missing)."""

    def __init__(self, path: str, timeout: float, poll_interval: float = 0.002):
        self.path = path
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._fd: int | None = None
        self._pid = 0  # the process that opened _fd
        self._door: int | None = None  # the door's descriptor, opened at the first acquire (same pid)

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
        door = self._door_descriptor()
        self._wait(lambda: filelock.lock_descriptor(door, blocking=False), deadline, self.poll_interval)
        try:
            self._wait(self._try_lock, deadline, NEXT_POLL)
        finally:
            filelock.unlock_descriptor(door)

    def _wait(self, attempt: Callable[[], bool], deadline: float, longest: float) -> None:
        pause = FIRST_POLL
        while not attempt():
            if time.monotonic() >= deadline:
                raise filelock.Timeout(self.path)
            time.sleep(pause)
            pause = min(pause * 2, longest)

    def _door_descriptor(self) -> int:
        self._descriptor()  # a fork's copies forgotten (both), and the lock file made
        if self._door is None:
            self._door = os.open(self.path + ".door", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._door

    def _try_lock(self) -> bool:
        while True:
            fd = self._descriptor()
            if filelock.lock_descriptor(fd, blocking=False):
                try:
                    at_path = self._is_at_path(fd)
                except BaseException:
                    filelock.unlock_descriptor(fd)  # never left held by an acquire that failed
                    raise
                if at_path:
                    return True
                filelock.unlock_descriptor(fd)  # a lock on a file nobody else will open: take the new one
                self._forget_lock()
                continue
            return False

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
        self._forget_lock()
        door, self._door = self._door, None
        _close(door)

    def _forget_lock(self) -> None:
        fd, self._fd = self._fd, None
        _close(fd)


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
