"""Long polls (``GET .../winners?wait=N``) that cost nothing while they wait.

One watcher per worker asks the store "drawn yet?" a few times a second, and only while
some request is waiting; every waiting request sleeps on one event the watcher sets at the
draw. A waiting request also wakes when its client disconnects (it listens on its receive
channel, no polling) and when the worker is told to stop: SIGTERM answers open polls at
once (503 with Retry-After) so the server stops in about a second, not after the longest
poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool

from app.store import Store

log = logging.getLogger("lottery")

TICK = 0.25  # seconds between two "drawn yet?" probes of one worker, while polls wait

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

    async def wait(
        self, seconds: float, disconnected: Callable[[], Awaitable[object]], round_id: int | None = None
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
                for round_id in list(self._waiting):
                    with contextlib.suppress(Exception):  # a storage hiccup: the polls time out with 425
                        if await run_in_threadpool(self.store.winners, 1, round=round_id) is not None:
                            self._drawn[round_id].set()
                await asyncio.sleep(self.tick)
        finally:
            self._task = None
