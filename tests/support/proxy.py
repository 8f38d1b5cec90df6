"""A TCP proxy that lets a given number of chunk requests reach the server, then holds every later one.

An upload interrupted there is interrupted at a known point: exactly ``allow`` chunks were
forwarded whole (a request already under way when the hold begins is let through to its end),
so once the server has stored them nothing else can arrive, and the test knows what was stored
before it kills the uploader. The server never sees a held request.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable

from tests.support.listener import listen

# A chunk request's line, on the current round's routes or a round's (the uploader uses those).
CHUNK = re.compile(rb"POST (?:/rounds/[0-9]+)?/agencies/[0-9]+/bets ")
_TAIL = 64  # bytes of a connection's last piece kept, to see a request line split across two reads


class HoldingProxy:
    """Forwards 127.0.0.1 TCP to ``port``; forwards ``allow`` requests holding ``marker``, holds the next."""

    def __init__(self, port: int, *, allow: int, marker: re.Pattern[bytes] = CHUNK):
        self.port, self.allow, self.marker = port, allow, marker
        self.seen = 0
        self.held = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def __enter__(self) -> HoldingProxy:
        self._listener = listen(self._forward)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.close()
        for s in self._sockets:
            s.close()

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.port))
        self._sockets += [client, upstream]
        threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _answers(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass

    def _requests(self, source: socket.socket, sink: socket.socket) -> None:
        tail = b""
        try:
            while data := source.recv(1 << 16):
                forward, blocked = self._gate(tail, data)
                if forward:
                    sink.sendall(forward)
                if blocked:
                    return  # this connection's next request is held: nothing more of it goes through
                tail = (tail + data)[-_TAIL:]
        except OSError:
            pass

    def _gate(self, tail: bytes, data: bytes) -> tuple[bytes, bool]:
        """What of ``data`` goes through, and whether the connection is held from there on."""
        with self._lock:
            for found in self.marker.finditer(tail + data):
                if found.end() <= len(tail):
                    continue  # seen with the previous piece
                if self.held.is_set() or self.seen == self.allow:
                    self.held.set()
                    return data[: max(found.start() - len(tail), 0)], True
                self.seen += 1
            return data, False


def hold_after(
    proxy: HoldingProxy, proc: subprocess.Popen, stored: Callable[[], int], expected: int, timeout: float = 60
) -> None:
    """Until ``proxy`` holds a request and ``stored()`` (the server's count) is ``expected``, then kill ``proc``.

    Both are observed events: after them nothing more of ``proc``'s upload can reach the server.
    """
    deadline = time.monotonic() + timeout
    while not (proxy.held.is_set() and stored() == expected):
        assert proc.poll() is None, f"the uploader ended before the hold: {proc.communicate(timeout=10)}"
        assert time.monotonic() < deadline, f"held: {proxy.held.is_set()}, stored: {stored()}, expected {expected}"
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=10)
