"""Group commit, for both backends: requests of one process that wait for the same turn are
committed together by whichever thread gets it, each still decided on its own.

Under load many requests of a worker wait at once; one write and one fsync (a file append, a
database commit) for all of them, instead of one each, is what lets the disk keep up. Every
request still has its own answer, given only once the batch is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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

    __slots__ = ("item", "round", "receipt", "error", "done")

    def __init__(self, item: T, round: int | None = None):
        # The round the request named; None: the current one, whichever it is when its batch commits.
        self.round = round
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
                fail_unsettled(batch, error)
    return ticket.outcome()


def fail_unsettled(tickets: list[Ticket[T, R]], error: Exception) -> None:
    """A batch's commit failed: each ticket it did not settle gets the error (its own copy)."""
    for ticket in tickets:
        if not ticket.done:
            ticket.fail(error)


class _Waiting(Generic[T, R]):
    """A ticket handed to a :class:`Committer`, and how its waiter is told: a future on an event
    loop, or an event for a thread."""

    __slots__ = ("ticket", "loop", "future", "event")

    def __init__(
        self,
        ticket: Ticket[T, R],
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ):
        self.ticket, self.loop, self.future = ticket, loop, future
        self.event = threading.Event() if loop is None else None

    def wake(self) -> None:
        """On the waiter's loop (or from any thread, for an event)."""
        if self.event is not None:
            self.event.set()
        elif self.future is not None and not self.future.done():  # done: cancelled, or expired
            self.future.set_result(None)


class Committer(Generic[T, R]):
    """One thread of this process that commits what the event loop hands it, a batch at a time.

    A small request would otherwise cost a thread-pool hop of its own and then a wait in
    ``turn``'s convoy of threads. Here the event loop appends the ticket to a queue and awaits
    a future; this thread takes the whole queue at each turn, commits it (``commit`` settles
    each ticket, or raises to fail every one not settled yet) and wakes the batch's waiters
    with one call into each loop.

    The busy rule is ``turn``'s: a ticket still queued (not taken into a batch) ``timeout``
    seconds after it was handed over is answered StorageBusy; once taken, it waits for its
    batch's outcome, which may be stored.
    """

    def __init__(self, commit: Callable[[list[Ticket[T, R]]], None], timeout: float, name: str = "committer"):
        self._commit = commit
        self.timeout = timeout
        self.name = name
        self._wake = threading.Condition(threading.Lock())
        self._queue: list[_Waiting[T, R]] = []
        self._turn = threading.Lock()  # held while a batch is taken and committed (see paused)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False
        self._batch: list[_Waiting[T, R]] = []  # the batch being committed (the thread's own)

    async def submit(self, ticket: Ticket[T, R]) -> R:
        """Hand ``ticket`` to the thread; its outcome once its batch is on disk (or refused)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(ticket, loop, loop.create_future())
        assert waiting.future is not None
        timer = loop.call_later(self.timeout, self._expire, waiting)
        self._put(waiting)
        try:
            await waiting.future
        finally:
            timer.cancel()
        return ticket.outcome()

    def wait(self, ticket: Ticket[T, R]) -> R:
        """:meth:`submit` for a caller that is a thread: it blocks until the outcome."""
        waiting = _Waiting(ticket)
        assert waiting.event is not None
        self._put(waiting)
        if not waiting.event.wait(self.timeout) and self._withdraw(waiting):
            raise StorageBusy("the storage is busy; retry shortly")
        waiting.event.wait()
        return ticket.outcome()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No batch is taken meanwhile: what is handed over waits in the queue, and the next
        batch takes it all (tests form a batch with it)."""
        with self._turn:
            yield

    def queued(self) -> int:
        """How many tickets wait to be taken into a batch."""
        with self._wake:
            return len(self._queue)

    def stop(self) -> None:
        """Let the thread commit what it was handed, then end (the worker stops)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
            thread = self._thread if self._pid == os.getpid() else None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout)

    def _put(self, waiting: _Waiting[T, R]) -> None:
        with self._wake:
            if self._thread is None or self._pid != os.getpid():  # first use, or a fork's copy
                self._pid, self._stopping, self._queue = os.getpid(), False, []
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._queue.append(waiting)
            self._wake.notify()

    def take_more(self) -> list[Ticket[T, R]]:
        """From within a commit, on this committer's thread: the tickets handed over since its batch
        was taken, now part of it (answered and woken with it). A commit that waited for a lock
        takes them once it holds it, so what arrived meanwhile rides this turn instead of waiting
        for the next lock turn (issue 22)."""
        with self._wake:
            extra, self._queue = self._queue, []
        self._batch.extend(extra)
        return [waiting.ticket for waiting in extra]

    def _withdraw(self, waiting: _Waiting[T, R]) -> bool:
        """Take ``waiting`` back if no batch took it yet (True); else its batch will answer it."""
        with self._wake:
            if waiting in self._queue:
                self._queue.remove(waiting)
                return True
        return False

    def _expire(self, waiting: _Waiting[T, R]) -> None:
        if self._withdraw(waiting):
            waiting.ticket.fail(StorageBusy("the storage is busy; retry shortly"))
            waiting.wake()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    return
            with self._turn:
                with self._wake:
                    batch, self._queue = self._queue, []
                if batch:  # (a timer may have withdrawn the last ticket meanwhile)
                    self._commit_batch(batch)

    def _commit_batch(self, batch: list[_Waiting[T, R]]) -> None:
        self._batch = batch  # take_more adds to it
        try:
            self._commit([waiting.ticket for waiting in batch])
        except Exception as error:
            fail_unsettled([waiting.ticket for waiting in batch], error)
        finally:  # never leave a request waiting for an answer
            self._batch = []
            fail_unsettled(
                [waiting.ticket for waiting in batch], StorageUnavailable("the commit gave this request no answer")
            )
            _wake_all(batch)


def _wake_all(batch: list[_Waiting[Any, Any]]) -> None:
    """Every waiter of a batch: one call_soon_threadsafe per event loop, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Waiting[Any, Any]]] = {}
    for waiting in batch:
        if waiting.loop is None:
            waiting.wake()
        else:
            by_loop.setdefault(waiting.loop, []).append(waiting)
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits there
            loop.call_soon_threadsafe(_wake_each, waiters)


def _wake_each(waiters: list[_Waiting[Any, Any]]) -> None:
    for waiting in waiters:
        waiting.wake()
