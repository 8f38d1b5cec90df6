"""Group commit, for both backends: requests of one process that wait for the same turn are
committed together by whichever thread gets it, each still decided on its own.

Under load many requests of a worker wait at once; one write and one fsync (a file append, a
database commit) for all of them, instead of one each, is what lets the disk keep up. Every
request still has its own answer, given only once the batch is on disk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Generic, TypeVar

from app.rounds import RoundError
from app.store.base import StorageBusy, StorageUnavailable, StoreError

log = logging.getLogger("lottery")

T = TypeVar("T")  # a queued request: its item
R = TypeVar("R")  # and its answer


class Ticket(Generic[T, R]):
    """One request waiting in its process's queue (a chunk, an agency's done), then its outcome."""

    __slots__ = ("item", "named", "receipt", "error", "done")

    def __init__(self, item: T, named: tuple[int, Callable[[], int]] | None = None):
        self.named = named  # (round, current round) when the request named its round
        self.item = item
        self.receipt: R | None = None
        self.error: Exception | None = None
        self.done = False

    def settle(self, outcome: R | StoreError | RoundError) -> None:
        if isinstance(outcome, (StoreError, RoundError)):
            self.error = outcome
        else:
            self.receipt = outcome
        self.done = True

    def fail(self, error: Exception) -> None:
        """A failure of the whole batch: each request gets its own exception object."""
        if not isinstance(error, StorageUnavailable):
            log.exception("action: guardar_apuestas | result: fail", exc_info=error)
            error = StorageUnavailable(f"storage error: {error}")
        self.error, self.done = type(error)(str(error)), True

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        assert self.receipt is not None
        return self.receipt


@contextmanager
def turn(
    lock: threading.Lock,
    guard: threading.Lock,
    timeout: float,
    ticket: Ticket[Any, Any] | None = None,
    queue: list[Any] | None = None,
) -> Iterator[None]:
    """This thread's turn at ``lock``; StorageBusy after ``timeout``, unless another thread took
    ``ticket`` from ``queue`` into its batch meanwhile: then wait for that batch's outcome, or a
    503 could be answered for a request that then gets stored."""
    if not lock.acquire(timeout=timeout):
        with guard:
            if ticket is None or (queue is not None and ticket in queue):
                if ticket is not None and queue is not None:
                    queue.remove(ticket)
                raise StorageBusy("the storage is busy; retry shortly")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def group_commit(
    ticket: Ticket[T, R],
    queue: list[Ticket[T, R]],
    guard: threading.Lock,
    turn: Callable[[Ticket[T, R], list[Ticket[T, R]]], AbstractContextManager[None]],
    commit: Callable[[list[Ticket[T, R]]], None],
) -> R:
    """Queue ``ticket``; at this thread's turn, unless another thread already settled it, commit
    the whole queue. ``commit`` settles each ticket; a failure settles every other one with it."""
    with guard:
        queue.append(ticket)
    with turn(ticket, queue):
        if not ticket.done:
            with guard:
                batch = queue[:]
                queue.clear()
            try:
                commit(batch)
            except Exception as error:
                for other in batch:
                    if not other.done:
                        other.fail(error)
    return ticket.outcome()
