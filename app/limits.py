"""Bounds on what one worker holds for its clients: request bodies in flight, and their memory.

A body is read whole before it is parsed (a chunk is all or nothing), so memory follows the
bodies in flight. Each worker has a budget of body bytes (``LOTTERY_BODY_BUDGET_BYTES``): a
body reserves its declared size before a byte of it is read and keeps it until its answer
is decided; one that does not fit waits up to ``BUDGET_WAIT`` seconds for room, then gets
503 with Retry-After, unread. A body without Content-Length (chunked) reserves as it grows
and gets the same 503 the moment it would not fit.

After a large body the worker hands freed heap back to the system (``malloc_trim``):
parsing leaves many small objects behind, and glibc keeps their pages otherwise.

Connections are bounded by file descriptors as well as by ``LOTTERY_MAX_CONNECTIONS``:
``connection_bounds`` keeps the limit, and the burst of connections the event loop accepts
at once, under the worker's open-file limit (``ulimit -n``), so that accept never meets EMFILE.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import resource
import time
from collections.abc import Callable
from typing import NamedTuple

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from app.problems import Problem

log = logging.getLogger("lottery")

# An ASGI scope extension our worker (app/worker.py) sets once a request's whole body has
# arrived: reading it then needs no deadline (a one-bet POST's body comes with its head).
BODY_RECEIVED = "lottery.body_received"

BUDGET_WAIT = 2.0  # seconds a body may wait for room in the budget before 503
TRIM_AFTER = 1024 * 1024  # bodies at least this large give their memory back when done
TRIM_DELAY = 0.5  # seconds after such a body's answer, once no body is in flight

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
    """Bytes of the budget held by one body, from ``async with`` to its end; ``grow`` for a body
    of unknown size. A class, not a generator-based context manager: one is entered per request,
    and a one-bet POST is a request (issue 22)."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: BodyBudget, size: int):
        self.budget, self.size = budget, size

    async def __aenter__(self) -> Reservation:
        budget = self.budget
        if not budget.fits(self.size):
            await budget.wait_for(self.size)
        budget.used += self.size
        if log.isEnabledFor(logging.DEBUG):
            log.debug("action: cuerpo_admitido | result: success | bytes: %d | en_uso: %d", self.size, budget.used)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.budget.release(self.size)

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
        self._waiting = 0  # bodies waiting for room
        self._trim = _malloc_trim()
        self._trim_timer: asyncio.TimerHandle | None = None

    def fits(self, size: int) -> bool:
        return self.used + size <= self.capacity

    def reserve(self, size: int) -> Reservation:
        """``async with budget.reserve(size)``: held from entry (after waiting for room) to exit."""
        return Reservation(self, size)

    async def release(self, size: int) -> None:
        self.used -= size
        if size >= TRIM_AFTER and self._trim is not None and self._trim_timer is None:
            # Later, not now: the parsed rows and the stored batch are freed after the answer.
            self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim_if_idle)
        if self._waiting:  # the condition's lock is taken only when a body waits for room
            async with self._freed:
                self._freed.notify_all()

    def _trim_if_idle(self) -> None:
        self._trim_timer = None
        assert self._trim is not None  # scheduled only when there is a malloc_trim
        if self.used == 0:
            self._trim(0)  # a few milliseconds for a few hundred MB
        else:  # bodies are still in flight: they will schedule the trim again
            self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim_if_idle)

    async def wait_for(self, size: int) -> None:
        """Until ``size`` fits (503 after ``wait`` seconds). Counted in ``_waiting`` before it
        looks, so a release meanwhile notifies, and it looks again under the condition's lock."""
        deadline = time.monotonic() + self.wait
        self._waiting += 1
        try:
            async with self._freed:
                while not self.fits(size):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BudgetExhausted(self.capacity, self.retry_after)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(left):
                            await self._freed.wait()
        finally:
            self._waiting -= 1


# Files a worker opens once it serves, besides its connections (the store's files, the
# database pool, metrics): measured in docs/reliability.md.
FD_MARGIN = 64
MIN_BACKLOG = 8  # a shorter listen queue would turn away even a small burst of connections


class ConnectionBounds(NamedTuple):
    connections: int  # connections the worker serves at once
    backlog: int  # the listen backlog: most connections one accept burst can take at once
    open_files: int  # the soft RLIMIT_NOFILE they were fitted to (0: unlimited)


def connection_bounds(wanted: int, backlog: int) -> ConnectionBounds:
    """``wanted`` connections and ``backlog``, lowered to fit this process's open-file limit.

    The event loop (uvloop, i.e. libuv) accepts every pending connection of the listen queue
    in one go, before any of them can be answered or closed, and on EMFILE it closes every
    pending connection unanswered (its "EMFILE trick"): `/health` among them, as a reset. So
    the descriptors open now, ``FD_MARGIN``, the connections served and one full listen
    queue must all fit the limit. The queue keeps up to a quarter of what is left (all it
    asked for, when that is less), and gets what the connections leave over.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ConnectionBounds(wanted, backlog, 0)
    free = soft - open_fds() - FD_MARGIN
    connections = max(1, min(wanted, free - min(backlog, max(MIN_BACKLOG, free // 4))))
    return ConnectionBounds(connections, min(backlog, max(MIN_BACKLOG, free - connections)), soft)


def open_fds() -> int:
    """File descriptors this process holds (Linux and macOS list them; 0 where neither does)."""
    for where in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(where)) - 1  # less the one listdir itself opened
        except OSError:
            continue
    return 0


class ConnectionSlots:
    """Connections one worker serves, each counted from its accept until its socket is closed."""

    def __init__(self, limit: int):
        self.limit, self.taken = limit, 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


M_ARENA_MAX = -8  # glibc's mallopt parameter number
MALLOC_ARENAS = 2  # glibc's default is 8 per core: each thread-pool thread's peak stays in its arena


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas in this process (call before threads start); False without glibc.

    Bodies are parsed in the thread pool; with an arena per thread, the memory of each
    thread's last large chunk stays mapped (measured: 123-159 MB after a spike of 4 MB
    chunks instead of 54-76 MB with 2 arenas; `python -m bench.load_bounds chunks`).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_NO_BODY_PROBLEM = (
    b'{"type":"about:blank","title":"Body not allowed","status":413,'
    b'"detail":"this method takes no request body; send none"}'
)


class RefuseUnexpectedBody:
    """ASGI middleware: a GET (or HEAD...) of a route that announces a body gets 413 at once.

    No route of this API reads a body on those methods, so one that comes is never read:
    it is refused from its head and the connection closed, instead of being trickled in
    (the worker's body deadline also ends it, but only after ``LOTTERY_BODY_TIMEOUT``).
    """

    def __init__(self, app: ASGIApp, router: Router):
        self.app, self.router = app, router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODYLESS_METHODS
            and _announces_body(scope["headers"])
            and self._has_route(scope)  # else the usual 404 or 405 (the body deadline still holds)
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(_NO_BODY_PROBLEM)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _NO_BODY_PROBLEM})
            return
        await self.app(scope, receive, send)

    def _has_route(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.router.routes)


def _announces_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
        if name == b"transfer-encoding":
            return True
    return False
