"""Prometheus metrics, correct across gunicorn's worker processes.

Under gunicorn every worker is a separate process with its own memory, so a scrape answered
by one worker would show only that worker's share. prometheus_client's multiprocess mode
fixes that: each process writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape sums the files of every process, dead ones
included (a counter must not drop when a worker restarts). gunicorn.conf.py creates and
wipes that directory in the master before the first fork, and forgets a dead worker's live
gauges in ``child_exit`` (https://prometheus.github.io/client_python/multiprocess/).

Without the variable (tests that build the app in-process) the default registry is used.
Only aggregates are exported: no label holds a document, a name or a token.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client import generate_latest as _generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; from a fast lock (a few ms) to the lock timeout's order of magnitude.
_LOCK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DRAW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

BETS_STORED = Counter("lottery_bets_stored", "Bets stored, by agency (replays not counted).", ["agency"])
CHUNKS = Counter(
    "lottery_chunks",
    "Chunks received, by outcome: stored, replayed, conflict (409), rejected (4xx), unavailable (503).",
    ["outcome"],
)
REQUEST_DURATION = Histogram(
    "lottery_request_duration_seconds",
    "HTTP request duration, by method, route template (or 'assets', 'unmatched') and status.",
    ["method", "route", "status"],
)
LOCK_WAIT = Histogram("lottery_lock_wait_seconds", "Time waiting for the storage lock.", buckets=_LOCK_BUCKETS)
DRAW_DURATION = Histogram("lottery_draw_duration_seconds", "Duration of the draw.", buckets=_DRAW_BUCKETS)
# Gauges: "max" for the round (round ids only grow; the scraping worker sets it from the store
# before it renders, so the max over workers is the current round even where a worker has not
# looked since another opened a round), "mostrecent" for the done count (set by whichever
# worker looked last, so a scrape from any worker gives the latest value).
ROUND = Gauge("lottery_round", "Id of the current round.", multiprocess_mode="max")
AGENCIES_DONE = Gauge(
    "lottery_agencies_done", "Agencies of the current round that said done.", multiprocess_mode="mostrecent"
)

# Chunk outcomes by exception class name: kept as names so this module needs no import of
# the store or ingest (they import this module).
_OUTCOME_BY_ERROR = {
    "RangeConflict": "conflict",
    "AgencyClosed": "conflict",
    "StorageUnavailable": "unavailable",
    "StorageBusy": "unavailable",
}


def _never_raises(record: Callable[..., None]) -> Callable[..., None]:
    """Metrics must never fail a request or leave a lock held: a failure is logged once and ignored."""

    @functools.wraps(record)
    def safe(*args: Any) -> None:
        global _warned
        try:
            record(*args)
        except Exception as error:  # e.g. the metrics dir is full or gone
            if not _warned:
                _warned = True
                logging.getLogger("lottery").warning("action: metricas | result: fail | error: %s", error)

    return safe


_warned = False


# Children of the labelled metrics, looked up once per label value rather than per request
# (``labels`` costs a lock and a tuple key each time). Their values live in this process's
# files as before; a child made before a fork notices the new pid itself (prometheus_client).
_chunk_outcomes: dict[str, Any] = {}
_bets_by_agency: dict[int, Any] = {}
_request_series: dict[tuple[str, str, int], Any] = {}


def _child(cache: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    child = cache.get(key)
    if child is None:
        child = cache[key] = make()
    return child


class _Tally:
    """What this process's requests added to counters and histograms, not yet in its files.

    Each write to a multiprocess value is a lock, a ``getpid`` and an mmap write; a one-bet
    POST made four, 15 to 20 µs of its ~200 (issue 22, measured A/B in docs/performance.md).
    Added up here, each value is written once per event-loop turn: by the worker just before
    it sends what the turn answered (app/worker.py, ``Corked``), so a scrape that follows an
    answer counts it; by a callback at the turn's end, for answers sent some other way; by a
    scrape, before it reads the files. A caller that is not on an event loop writes at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a scrape flushes from the thread pool
        self._counts: dict[Any, float] = {}  # a counter's child -> the amount added
        self._observed: dict[Any, list[float]] = {}  # a histogram's child -> the amounts observed
        self._scheduled: asyncio.AbstractEventLoop | None = None  # the loop whose turn will flush

    def count(self, child: Any, amount: float) -> None:
        if not self._on_a_loop():
            child.inc(amount)
            return
        with self._lock:
            self._counts[child] = self._counts.get(child, 0) + amount

    def observe(self, child: Any, amount: float) -> None:
        if not self._on_a_loop():
            child.observe(amount)
            return
        with self._lock:
            observed = self._observed.get(child)
            if observed is None:
                self._observed[child] = [amount]
            else:
                observed.append(amount)

    def _on_a_loop(self) -> bool:
        """On an event loop's thread: the turn's end flushes (scheduled once a turn)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._scheduled is not loop:
            self._scheduled = loop
            loop.call_soon(self._turn_ended)
        return True

    def _turn_ended(self) -> None:
        self._scheduled = None
        self.flush()

    def flush(self) -> None:
        """Write what was added: one write per value (a histogram: its sum and each bucket hit)."""
        if not self._counts and not self._observed:
            return
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
        _write(counts, observed)

    def forget(self) -> None:
        """In a forked child: the parent's additions are the parent's to write."""
        self._lock = threading.Lock()
        self._counts, self._observed, self._scheduled = {}, {}, None


@_never_raises
def _write(counts: dict[Any, float], observed: dict[Any, list[float]]) -> None:
    for child, amount in counts.items():
        child.inc(amount)
    for child, amounts in observed.items():
        # Histogram.observe, for many amounts at once: the sum, then a count per bucket (the
        # first bound at or above the amount). prometheus_client keeps no public call for it;
        # tests/unit/test_metrics_tally.py holds the result equal to observing one by one.
        child._sum.inc(sum(amounts))
        hits: dict[int, int] = {}
        bounds = child._upper_bounds
        for amount in amounts:
            at = bisect.bisect_left(bounds, amount)
            if at < len(bounds):  # (NaN is in no bucket, as observe has it)
                hits[at] = hits.get(at, 0) + 1
        for at, count in hits.items():
            child._buckets[at].inc(count)


_tally = _Tally()
os.register_at_fork(after_in_child=_tally.forget)
flush = _tally.flush


@_never_raises
def chunk_stored(agency: int, stored: int, replayed: bool) -> None:
    if replayed:
        _tally.count(_child(_chunk_outcomes, "replayed", lambda: CHUNKS.labels("replayed")), 1)
        return
    _tally.count(_child(_chunk_outcomes, "stored", lambda: CHUNKS.labels("stored")), 1)
    _tally.count(_child(_bets_by_agency, agency, lambda: BETS_STORED.labels(str(agency))), stored)


@_never_raises
def chunk_failed(error: BaseException) -> None:
    CHUNKS.labels(_OUTCOME_BY_ERROR.get(type(error).__name__, "rejected")).inc()


@_never_raises
def observe_lock_wait(seconds: float) -> None:
    LOCK_WAIT.observe(seconds)


@_never_raises
def observe_draw(seconds: float) -> None:
    DRAW_DURATION.observe(seconds)


@_never_raises
def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    _tally.observe(_child(_request_series, key, lambda: REQUEST_DURATION.labels(method, route, str(status))), seconds)


@_never_raises
def set_round_state(round_id: int, agencies_done: int) -> None:
    ROUND.set(round_id)
    AGENCIES_DONE.set(agencies_done)


def render() -> bytes:
    """The text exposition of every process's metrics (or this process's, outside gunicorn)."""
    flush()
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return _generate_latest(REGISTRY)
    registry = CollectorRegistry()  # a fresh one per scrape, as the docs ask: it reads the files
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
    return _generate_latest(registry)


# -- the request-duration middleware ------------------------------------------------------

Scope = MutableMapping[str, Any]
ASSETS = "assets"
_DOCS = ("/docs", "/redoc", "/openapi.json", "/static")  # route prefixes of the docs pages and their files
# Any other method is one label: a client may send any token as a method.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestDurationMiddleware:
    """Times every HTTP request; labels it with its route *template* (``/agencies/{agency}/bets``).

    A path that matches no route is labelled ``unmatched``, so random URLs cannot grow the
    number of series; the API docs and static files (any path under a mount, a script named
    per release) are all ``assets``: they say nothing about the service. The method is a
    label of its own (GET and POST ``/rounds`` are different work); a method no route
    takes is ``other``. A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task
    per request.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    @staticmethod
    def _template(scope: Scope) -> str:
        route = scope.get("route")  # FastAPI puts the matched APIRoute here
        if route is not None:
            path = getattr(route, "path_format", None) or route.path
            return ASSETS if path.startswith(_DOCS) else path
        if scope.get("endpoint") is not None:  # a mount (static files) or a plain Starlette route (/openapi.json)
            return ASSETS
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises past every handler

        async def send_with_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            observe_request(method, self._template(scope), status, time.perf_counter() - started)
