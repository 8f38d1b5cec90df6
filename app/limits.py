"""Bounds on what one worker holds for its clients: request bodies in flight, and their memory.

A body is read whole before it is parsed (a chunk is all or nothing), so memory follows the
bodies in flight. Each worker has a budget of body bytes (``LOTTERY_BODY_BUDGET_BYTES``): a
body reserves its declared size before a byte of it is read and keeps it until its answer
is decided; one that does not fit waits up to ``BUDGET_WAIT`` seconds for room, then gets
503 with Retry-After, unread. A body without Content-Length (chunked) reserves as it grows
and gets the same 503 the moment it would not fit.

After a large body the worker hands freed heap back to the system (``malloc_trim``):
parsing leaves many small objects behind, and glibc keeps their pages otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import time
from collections.abc import AsyncIterator

from app.problems import Problem

log = logging.getLogger("lottery")

BUDGET_WAIT = 2.0  # seconds a body may wait for room in the budget before 503
TRIM_AFTER = 1024 * 1024  # bodies at least this large give their memory back when done

# Clients that closed the connection in the middle of their request (a body or a long poll),
# counted per worker since it started.
disconnects = 0


def client_gone(what: str, agency: int) -> None:
    """One info line and a count for a client that left mid-request: not an error of ours."""
    global disconnects
    disconnects += 1
    log.info("action: cliente_desconectado | result: fail | agencia: %d | durante: %s", agency, what)


class BudgetExhausted(Problem):
    def __init__(self, capacity: int, retry_after: int):
        super().__init__(
            503,
            "Server busy",
            f"this worker already holds {capacity} bytes of request bodies; retry shortly",
            headers={"Retry-After": str(retry_after)},
        )


class Reservation:
    """Bytes of the budget held by one body; ``grow`` for a body of unknown size."""

    def __init__(self, budget: BodyBudget, size: int):
        self.budget, self.size = budget, size

    def grow(self, more: int) -> None:
        if not self.budget.fits(more):
            raise BudgetExhausted(self.budget.capacity, self.budget.retry_after)
        self.budget.used += more
        self.size += more


class BodyBudget:
    """Body bytes held at once by this worker's event loop (single-threaded: plain counters)."""

    def __init__(self, capacity: int, retry_after: int = 1, wait: float = BUDGET_WAIT):
        self.capacity, self.retry_after, self.wait = capacity, retry_after, wait
        self.used = 0
        self._freed = asyncio.Condition()
        self._trim = _malloc_trim()

    def fits(self, size: int) -> bool:
        return self.used + size <= self.capacity

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[Reservation]:
        if not self.fits(size):
            await self._wait_for(size)
        self.used += size
        held = Reservation(self, size)
        try:
            yield held
        finally:
            self.used -= held.size
            if held.size >= TRIM_AFTER and self._trim is not None and self.used == 0:
                self._trim(0)
            async with self._freed:
                self._freed.notify_all()

    async def _wait_for(self, size: int) -> None:
        deadline = time.monotonic() + self.wait
        async with self._freed:
            while not self.fits(size):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BudgetExhausted(self.capacity, self.retry_after)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._freed.wait()


def _malloc_trim():  # noqa: ANN202 - a ctypes function or None
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim
