"""The gunicorn worker class: uvicorn's, plus deadlines for a request's head and body.

uvicorn bounds idle keep-alive connections but not a client that opens a connection and
sends its request head a byte at a time ("slowloris"), nor one that trickles a body to a
route that never reads it: each such connection holds a slot (and a file descriptor)
forever. This protocol adds:

- a **head deadline** (``LOTTERY_HEADER_TIMEOUT``): armed only while the connection waits
  for a new request's head, never while an earlier request of the connection is being
  served (a pipelined head that arrives meanwhile waits its turn; a raw 408 written then
  would be read as the answer to the request being served);
- a **body deadline** for every route: a body still arriving ``LOTTERY_BODY_TIMEOUT`` + 1
  seconds after its head closes the connection (``/bets`` answers its own 408 a second
  earlier, from the app);
- the **shutdown signal** for long polls (app/draw_watch.py): uvicorn calls ``shutdown`` on
  every connection when SIGTERM arrives, before it waits for requests to finish.

The number of connections per worker is bounded with uvicorn's ``limit_concurrency``
(``LOTTERY_MAX_CONNECTIONS``): over it, a request gets 503 instead of a slot.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from app import draw_watch
from app.limits import limit_malloc_arenas
from app.settings import get_settings

_BODY_GRACE = 1.0  # the app's own 408 for a slow /bets body comes first


class HeadDeadlineProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _head_begun = False  # bytes of a request head arrived; its headers are not complete yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        if not self._serving():
            self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._head_begun = False
        self._cancel_head_deadline()
        if self._has_body():
            self._body_timer = self.loop.call_later(get_settings().body_timeout + _BODY_GRACE, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_body_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the next pipelined request, if one is queued
        if self._head_begun and not self._serving() and not self.transport.is_closing():
            # The connection now waits for a head that began arriving while we were busy.
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._cancel_body_deadline()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        draw_watch.shutting_down()  # open long polls answer at once instead of holding the stop
        super().shutdown()

    def _serving(self) -> bool:
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length" and value.strip() not in (b"0", b""):
                return True
            if name == b"transfer-encoding":
                return True
        return False

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_timer = self.loop.call_later(get_settings().header_timeout, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_deadline(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and not self._serving():
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def _body_too_slow(self) -> None:
        # The request it belongs to is told "disconnected"; nothing can be answered on a
        # connection whose body is still half sent.
        self._body_timer = None
        if self.pipeline:  # the body is a queued request's: reading waits for the one being served
            self._body_timer = self.loop.call_later(get_settings().body_timeout, self._body_too_slow)
        elif not self.transport.is_closing():
            self.transport.close()


class LotteryWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": HeadDeadlineProtocol}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Per instance: the settings are read in the worker, after the master validated them.
        self.CONFIG_KWARGS = {**LotteryWorker.CONFIG_KWARGS, "limit_concurrency": get_settings().connection_limit}
        super().__init__(*args, **kwargs)

    def init_process(self) -> None:
        limit_malloc_arenas()  # in the worker, before its thread pool exists (app/limits.py)
        super().init_process()

    def run(self) -> None:
        # uvloop closes a listening socket itself, then closes the object it was handed: gunicorn's
        # wrapper, whose second close logged "Error while closing socket [Errno 9]" at every stop.
        # Handed the socket itself, uvloop detaches it instead.
        self.sockets = [getattr(listener, "sock", listener) for listener in self.sockets]
        super().run()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # The master's "quick shutdown" (SIGINT or SIGQUIT to it) sends the workers SIGQUIT, which
        # the uvicorn worker turns into this: a flag nothing reads, so the master waited its
        # graceful_timeout and then SIGKILLed us. Stop as SIGTERM stops: uvicorn's own shutdown
        # (the long polls answer at once, requests being served finish).
        super().handle_exit(sig, frame)
        os.kill(os.getpid(), signal.SIGTERM)
