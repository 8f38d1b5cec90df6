"""A loopback listener for the tests' fake servers and proxies: accepts in a daemon thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def listen(handle: Callable[[socket.socket], None]) -> socket.socket:
    """A listener on 127.0.0.1 (a free port) whose connections go to ``handle``, called in the
    accepting thread (start a thread there for a long one); closing the listener stops it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed
                return
            handle(conn)

    threading.Thread(target=accept, daemon=True).start()
    return listener
