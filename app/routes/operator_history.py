"""The ingest chart's history, kept by the server so a reloaded page (or a second one) shows it.

Each worker samples the current round's bets total every second (``SAMPLE_SECONDS``) while
the round is open, and keeps the points where it changed, over the chart's window. The total
is the store's, whatever worker stored the bets, so every worker's history is the same curve
(give or take a second): a page may reconnect to any of them.

Only changes are kept, each flat stretch as its two ends: the page rebuilds one value per
second from them (a step function), and a quiet round sends nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

SAMPLE_SECONDS = 1.0
WINDOW_SECONDS = 310  # the chart's 5 minutes, and its smoothing
log = logging.getLogger("lottery")


class IngestHistory:
    """``(unix time, bets)`` points of one round: each change, and the last time before it seen unchanged."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.round: int | None = None
        self.drawn = False
        self._points: deque[tuple[float, int]] = deque()
        self._seen = 0.0  # when the last point's total was last seen unchanged

    def observe(self, round_id: int, bets: int, drawn: bool) -> None:
        now = self.clock()
        if round_id != self.round:
            self.round, self._points = round_id, deque()
        self.drawn = drawn
        if not self._points or self._points[-1][1] != bets:
            if self._points and self._seen > self._points[-1][0]:
                self._points.append((self._seen, self._points[-1][1]))  # the flat stretch's end
            self._points.append((now, bets))
        self._seen = now
        while len(self._points) > 2 and self._points[1][0] < now - WINDOW_SECONDS:
            self._points.popleft()  # one point before the window stays: the curve's start

    def points(self) -> list[list[float]]:
        return [[round(t, 2), bets] for t, bets in self._points]


def sample(app: FastAPI) -> None:
    """The current round's bets total into the history (blocking: off the event loop). The
    round's state as kept (its counts, never a row per agency: issue 21), read only."""
    history: IngestHistory = app.state.ingest_history
    store = app.state.store
    current = store.current_round()  # a stat (files) or one query: another worker may have opened one
    if current == history.round and history.drawn:
        return  # nothing changes in a drawn round
    status = store.status(draw=False, round=current)
    history.observe(current, status.bets, status.drawn)


async def sample_forever(app: FastAPI) -> None:
    """Every second while the round is open: its total into the history (a stat when drawn)."""
    while True:
        try:
            await run_in_threadpool(sample, app)
        except Exception as error:  # storage down: try again next time; the page shows the 503  # noqa: BLE001
            log.debug("action: historial_carga | result: fail | error: %s", error)
        await asyncio.sleep(SAMPLE_SECONDS)


def install(app: FastAPI) -> None:
    """The history and its sampler, which runs for the worker's life (wrapped around the app's lifespan)."""
    app.state.ingest_history = IngestHistory()
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as state:  # the store closes after the sampler stopped
            task = asyncio.create_task(sample_forever(application))
            try:
                yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.router.lifespan_context = lifespan
