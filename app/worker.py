"""The gunicorn worker class: uvicorn's, plus bounds on connections from their accept.

uvicorn bounds idle keep-alive connections but not a client that opens a connection and
sends its request head a byte at a time ("slowloris"), nor one that trickles a body to a
route that never reads it, nor one that never says anything: each such connection holds a
slot (and a file descriptor). This worker adds:

- a **connection limit counted from accept** (``LOTTERY_MAX_CONNECTIONS``): the protocol
  factory, which the event loop calls at each accept, takes one of the worker's slots; a
  connection that finds none is answered 503 at once and closed (under TLS it is closed
  unanswered: no handshake is spent on it). A silent connection holds its slot only until
  the head deadline. The limit itself is kept under the worker's open-file limit, with room
  for one full listen queue (app/limits.py ``connection_bounds``), so accept never fails
  with EMFILE; the worker logs the limit it applies (``action: limite_conexiones``);
- a **head deadline** (``LOTTERY_HEADER_TIMEOUT``) that counts from accept, the TLS
  handshake included: the factory makes the connection's TLS layer itself (the event loop's
  own SSLProtocol, with the deadline as its handshake timeout) instead of the loop's server,
  whose 60 s handshake timeout ran before the deadline began. After the first head it is
  armed only while the connection waits for a new request's head, never while an earlier
  request of the connection is being served (a pipelined head that arrives meanwhile waits
  its turn; a raw 408 written then would be read as the answer to the request being served);
- a **body deadline** for every route: a body still arriving ``LOTTERY_BODY_TIMEOUT`` + 1
  seconds after its head closes the connection (``/bets`` answers its own 408 a second
  earlier, from the app);
- the **shutdown signal** for long polls (app/draw_watch.py): uvicorn calls ``shutdown`` on
  every connection when SIGTERM arrives, before it waits for requests to finish.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from app import draw_watch, logs
from app.limits import BODY_RECEIVED, ConnectionSlots, connection_bounds, limit_malloc_arenas
from app.settings import get_settings

log = logging.getLogger("lottery")

_BODY_GRACE = 1.0  # the app's own 408 for a slow /bets body comes first
CORK_BYTES = 65536  # Corked holds at most this much


def _nothing() -> None:
    pass


# Called before a connection sends what it held: the app's metrics flush (app/metrics.py), set
# once the app is loaded. Not imported here: this module is imported in gunicorn's master
# before gunicorn.conf.py names the metrics' directory, and prometheus_client picks its
# storage when it is first imported.
_before_send: Callable[[], None] = _nothing


class Corked:
    """A connection's transport whose writes of one event-loop turn go out as one send: uvicorn
    writes a response's head and its body apart (two system calls, two TCP segments), and a
    one-bet POST's answer is a head and a few dozen bytes (issue 22). What is held is sent at
    the end of the turn, and before a close, so nothing is late by more than the turn. The
    turn's metrics are written first (app/metrics.py): a scrape after an answer counts it."""

    __slots__ = ("_transport", "_loop", "_held", "_size")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            if len(data) >= CORK_BYTES:  # a big write (a download's part) goes as is
                _before_send()
                self._transport.write(data)
                return
            self._loop.call_soon(self._send)
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size >= CORK_BYTES:  # never more than this held: the transport's flow control sees the rest
            self._send()

    def _send(self) -> None:
        held, self._held, self._size = self._held, [], 0
        _before_send()
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def writelines(self, data: Any) -> None:
        for part in data:
            self.write(part)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def write_eof(self) -> None:
        self._send()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held, self._size = [], 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:  # everything else: the transport's own
        return getattr(self._transport, name)


class HeadDeadlineProtocol(HttpToolsProtocol):
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _head_begun = False  # bytes of a request head arrived; its headers are not complete yet
    _head_new = False  # a head began in the data being parsed: its deadline is decided after
    _body_pending = False  # a head completed in the data being parsed, its body not yet
    _free_slot: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accepted_at = self.loop.time()  # the event loop makes the protocol at accept

    def holds(self, free_slot: Callable[[], None]) -> None:
        """The connection holds a slot of the worker's limit until ``free`` (or its close)."""
        self._free_slot = free_slot

    def free(self) -> None:
        free_slot, self._free_slot = self._free_slot, None
        if free_slot is not None:
            free_slot()

    def handshake_done(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.cancelled():
            waiter.exception()  # retrieved: a failed handshake is the client's, not ours to log
        transport: asyncio.Transport | None = self.transport  # uvicorn's None until connection_made
        if transport is None:  # the TLS layer never made the connection: it is closed
            self.free()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(Corked(transport, self.loop))  # type: ignore[arg-type]
        self._arm_head_deadline(at=self.accepted_at + get_settings().header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The deadlines are armed once the parser has taken all of ``data``: a request whose head
        # and body arrive together (a one-bet POST: issue 22) needs neither timer.
        if self._head_new:
            self._head_new = False
            if self._head_begun and not self._serving():
                self._arm_head_deadline()
        if self._body_pending:
            self._body_pending = False
            if self._body_timer is None and self._has_body():
                self._body_timer = self.loop.call_later(get_settings().body_timeout + _BODY_GRACE, self._body_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = self._head_new = True

    def on_headers_complete(self) -> None:
        self._head_begun = False
        self._cancel_head_deadline()
        self._body_pending = True  # until on_message_complete, in this same data_received or not
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._cancel_body_deadline()
        # The whole body is in the request's buffer now: the app reads it without a deadline.
        extensions = self.scope.get("extensions")
        if extensions is None:
            self.scope["extensions"] = {BODY_RECEIVED: {}}
        else:
            extensions[BODY_RECEIVED] = {}
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # starts the next pipelined request, if one is queued
        if self._head_begun and not self._serving() and not self.transport.is_closing():
            # The connection now waits for a head that began arriving while we were busy.
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self._cancel_body_deadline()
        self.free()
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

    def _arm_head_deadline(self, at: float | None = None) -> None:
        self._cancel_head_deadline()
        when = at if at is not None else self.loop.time() + get_settings().header_timeout
        self._head_timer = self.loop.call_at(when, self._head_too_slow)

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


def _busy_answer(limit: int) -> bytes:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Server busy",
            "status": 503,
            "detail": f"this worker already serves {limit} connections; retry shortly",
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class Refused(asyncio.Protocol):
    """A connection over the limit: ``answer`` (if any) and closed, before a byte is read."""

    def __init__(self, answer: bytes):
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.answer:
            transport.write(self.answer)  # type: ignore[attr-defined]
        transport.close()


class Acceptor:
    """uvicorn's protocol factory: called by the event loop at each accept, before a byte is read."""

    def __init__(self, slots: ConnectionSlots, tls: ssl.SSLContext | None, loop: asyncio.AbstractEventLoop):
        self.slots, self.tls = slots, tls
        self.busy = b"" if tls is not None else _busy_answer(slots.limit)
        self.tls_layer = _tls_protocol_class(loop)

    def __call__(self, **kwargs: Any) -> asyncio.BaseProtocol:
        if not self.slots.take():
            return Refused(self.busy)
        http = HeadDeadlineProtocol(**kwargs)
        http.holds(self.slots.give_back)
        return http if self.tls is None else self._handshake(http, self.tls)

    def _handshake(self, http: HeadDeadlineProtocol, context: ssl.SSLContext) -> asyncio.BaseProtocol:
        """The TLS layer the event loop's server would make, but timed by the head deadline.

        It starts at accept; ``http`` gets ``connection_made`` once it is done, and never
        hears of a handshake that failed or timed out: the waiter frees the slot then.
        """
        waiter = http.loop.create_future()
        waiter.add_done_callback(http.handshake_done)
        layer: asyncio.BaseProtocol = self.tls_layer(
            http.loop,
            http,
            context,
            waiter,
            server_side=True,
            server_hostname=None,
            ssl_handshake_timeout=get_settings().header_timeout,
        )
        return layer


def _tls_protocol_class(loop: asyncio.AbstractEventLoop) -> type:
    """The TLS protocol of ``loop``'s own servers: uvloop's (its transports read into it
    directly), or asyncio's where uvloop is not the loop."""
    uvloop = sys.modules.get("uvloop.loop")
    if uvloop is not None and isinstance(loop, uvloop.Loop):
        layer: type = uvloop.SSLProtocol
        return layer
    return asyncio.sslproto.SSLProtocol


class LotteryWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": HeadDeadlineProtocol}
    sockets: list[Any]  # gunicorn's listeners (gunicorn ships no types)

    def init_process(self) -> None:
        limit_malloc_arenas()  # in the worker, before its thread pool exists (app/limits.py)
        logs.spare_record_fields()
        super().init_process()

    async def _serve(self) -> None:
        global _before_send
        config = self.config
        config.app = self.wsgi
        config.load()
        from app import metrics  # (imported by the app by now: see _before_send)

        _before_send = metrics.flush
        # What the app made to start is there for good: out of the collector's sight, so a full
        # collection does not walk it (they paused a worker up to 50 ms under one-bet load).
        gc.collect()
        gc.freeze()
        wanted = get_settings().connection_limit
        bounds = connection_bounds(wanted, config.backlog)
        config.backlog = bounds.backlog
        # The Acceptor makes every connection's protocol, TLS layer included: the loop's own
        # would begin the handshake outside both the limit and the head deadline.
        tls, config.ssl = config.ssl, None
        slots = ConnectionSlots(bounds.connections)
        config.http_protocol_class = Acceptor(slots, tls, asyncio.get_running_loop())  # type: ignore[assignment]
        log.info(
            "action: limite_conexiones | result: success | limite: %d | pedido: %d | archivos_abiertos: %s"
            " | backlog: %d",
            bounds.connections,
            wanted,
            bounds.open_files or "ilimitado",
            bounds.backlog,
        )
        await super()._serve()

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
