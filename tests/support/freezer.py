"""A TCP proxy on 127.0.0.1 that can freeze, the way a SIGSTOPped or hung database host does.

Frozen, it forwards nothing either way and answers no new connection beyond the kernel's
accept; nothing is closed or reset: the client sees silence, exactly as with a host that hangs
on a live kernel (which still acknowledges every packet, so TCP keepalives do not help).
"""

from __future__ import annotations

import socket
import threading

from tests.support.listener import listen


class FreezingProxy:
    def __init__(self, port: int) -> None:
        self.port, self.connections = port, 0
        self.thawed = threading.Event()
        self.thawed.set()
        self._sockets: list[socket.socket] = []
        self._listener = listen(self._admit)
        self.listen_port = self._listener.getsockname()[1]

    def __enter__(self) -> FreezingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        for s in self._sockets:
            s.close()
        self.thawed.set()

    def freeze(self) -> None:
        self.thawed.clear()

    def _admit(self, client: socket.socket) -> None:
        self._sockets.append(client)
        threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        self.thawed.wait()  # a frozen host accepts (its kernel does) and says nothing
        self.connections += 1
        upstream = socket.create_connection(("127.0.0.1", self.port))
        self._sockets.append(upstream)
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        self._pipe(upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                self.thawed.wait()  # frozen: what arrived stays unanswered
                sink.sendall(data)
        except OSError:
            pass
