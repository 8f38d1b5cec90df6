"""Long polls (``GET .../winners?wait=N``) that cost nothing while they wait.

One watcher per worker asks the store "drawn yet?" every ``TICK``, and only while some request
is waiting; every waiting request sleeps on one event the watcher sets at the draw. The
worker whose request performs the draw asks at once (``probe_now``): its polls answer in the
same moment, the other workers' within a tick. A waiting request also wakes when its client
disconnects (it listens on its receive channel, no polling) and when the worker is told to
stop: SIGTERM answers open polls at once (503 with Retry-After) so the server stops in about
a second, not after the longest poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.store import Store

log = logging.getLogger("lottery")

# Seconds between two "drawn yet?" probes of one worker, while polls wait. At 0.25 s the last
# agencies of a 1M-bet round learned of the draw ~0.2 s after it, a sixth of the round. Each
# tick costs ~0.2 ms of CPU on a VM (the timer's wake-up alone), so not much shorter: with 200
# polls open, 1.4 % of a core at 0.1 s, 2.8 % at 0.05 (`python -m bench.load_bounds polls`).
# With the file backend a probe is a stat on the loop; with PostgreSQL, a query in a thread.
TICK = 0.1

_stopping = asyncio.Event()  # set once, when this worker begins its graceful shutdown


def shutting_down() -> None:
    """Called by the worker's protocol when uvicorn starts a graceful shutdown."""
    _stopping.set()


def stopping() -> bool:
    return _stopping.is_set()


class Wake(enum.Enum):
    DRAWN = "drawn"
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"
    STOPPING = "stopping"


class DrawWatch:
    """The draw, as this worker's long polls see it: one probe per waited round per tick, whatever their number.

    Keyed by round: once round 1 is drawn, a poll on round 2 must wait for round 2's draw.
    ``None`` means "the current round" (for callers that know there is only one).
    """

    def __init__(self, store: Store, tick: float = TICK):
        self.store, self.tick = store, tick
        self._drawn: dict[int | None, asyncio.Event] = {}
        self._waiting: dict[int | None, int] = {}  # round -> polls waiting for it
        self._task: asyncio.Task[None] | None = None
        self._probe = asyncio.Event()  # set: probe now, not at the end of the tick

    def probe_now(self) -> None:
        """A draw happened in this worker: the waiting polls learn it now, not a tick later."""
        self._probe.set()

    async def wait(
        self, seconds: float, disconnected: Callable[[], Coroutine[Any, Any, object]], round_id: int | None = None
    ) -> Wake:
        """Until that round's draw, ``seconds``, the client leaving (``disconnected`` returns) or shutdown."""
        drawn = self._drawn.setdefault(round_id, asyncio.Event())
        if drawn.is_set():
            return Wake.DRAWN
        self._waiting[round_id] = self._waiting.get(round_id, 0) + 1
        if self._task is None:
            self._task = asyncio.create_task(self._watch())
        waits = {
            asyncio.create_task(drawn.wait()): Wake.DRAWN,
            asyncio.create_task(_stopping.wait()): Wake.STOPPING,
            asyncio.create_task(disconnected()): Wake.DISCONNECTED,
        }
        try:
            done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting[round_id] -= 1
            if not self._waiting[round_id]:
                del self._waiting[round_id]
            for task in waits:
                task.cancel()
        if not done:
            return Wake.TIMEOUT
        woken = {waits[task] for task in done}
        return next(w for w in (Wake.DRAWN, Wake.STOPPING, Wake.DISCONNECTED) if w in woken)

    async def _watch(self) -> None:
        try:
            while self._waiting:
                self._probe.clear()  # a probe_now() from here on asks again at once
                for round_id in list(self._waiting):
                    with contextlib.suppress(Exception):  # a storage hiccup: the polls time out with 425
                        if await self._is_drawn(round_id):
                            self._drawn[round_id].set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._probe.wait(), self.tick)
        finally:
            self._task = None

    async def _is_drawn(self, round_id: int | None) -> bool:
        # A backend with a file that appears at the draw: a stat, here on the loop (microseconds);
        # else the store's answer, in a thread. The polls then read their winners the usual way.
        marker = self.store.draw_marker(round_id) if round_id is not None else None
        if marker is not None:
            return os.path.exists(marker)
        return await run_in_threadpool(self.store.winners, 1, round=round_id) is not None
