"""The gunicorn worker class: uvicorn's, plus a deadline for a request's headers.

uvicorn bounds idle keep-alive connections but not a client that opens a connection and
sends its request head a byte at a time ("slowloris"): each such connection holds a slot
forever. This protocol closes a connection whose request head has not fully arrived within
``LOTTERY_HEADER_TIMEOUT`` seconds of its first byte (or of the connection opening). The body
has its own deadline in the app (408, ``LOTTERY_BODY_TIMEOUT``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from app.settings import get_settings


class HeadDeadlineProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None
    _head_timeout: float | None = None  # read from the settings once per worker

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        if HeadDeadlineProtocol._head_timeout is None:
            HeadDeadlineProtocol._head_timeout = get_settings().header_timeout
        self._head_timer = self.loop.call_later(HeadDeadlineProtocol._head_timeout, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()


class LotteryWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "auto", "http": HeadDeadlineProtocol}
