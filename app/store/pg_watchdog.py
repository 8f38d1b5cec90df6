"""How the PostgreSQL backend notices a database host that is lost or hangs (issue 24).

A host that dies on a live machine resets its connections: the next query fails at once. A
host lost from the network (power, cable, a dead VM) answers nothing: the TCP keepalives and
``tcp_user_timeout`` below end the wait in ~15 s. A host that hangs on a live kernel (SIGSTOP,
a stuck VM, an I/O freeze) is the worst: its kernel still acknowledges every packet, so
keepalives succeed, and its server never fires its own ``statement_timeout``. Only the client
can end that wait: :class:`Watchdog` cuts the socket of a connection held past its deadline,
and the query waiting on it fails (a 503) instead of blocking its worker forever.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

log = logging.getLogger("lottery")

# A lost peer is noticed on an idle connection after 5 + 3 x 2 s of unanswered probes, and on a
# busy one once sent data stays unacknowledged for 15 s.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # ms
}
# The server's own statement_timeout is the lock timeout plus this; the client's deadline for
# one use of a connection is the lock timeout plus twice this, so a live server answers first.
STATEMENT_MARGIN = 5.0
CHECK_DEADLINE = 3.0  # a pooled connection's ping (an empty query): longer, its host hangs
TICK = 0.5  # how often the watchdog looks: deadlines are met within this


class Watchdog:
    """Deadlines for connections in use; the socket of one past its deadline is cut.

    Cutting (``shutdown``) wakes the thread blocked on it: libpq reads end-of-file, the
    connection is broken, and the pool discards it when it comes back. ``on_cut`` is then
    called once per tick that cut something (the store drops the pool: its other connections
    go to the same hanging host). One thread per process, started on first use (after a fork,
    again: gunicorn's workers do not share the master's).
    """

    def __init__(self, on_cut: Callable[[], None]) -> None:
        self.on_cut = on_cut
        self._watched: dict[int, tuple[float, float, psycopg.Connection[Any]]] = {}
        self._lock = threading.Lock()
        self._pid = 0

    @contextmanager
    def watch(self, conn: psycopg.Connection[Any], seconds: float) -> Iterator[None]:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._watched = os.getpid(), {}
                threading.Thread(target=self._run, name="lottery-db-watchdog", daemon=True).start()
            self._watched[id(conn)] = (time.monotonic() + seconds, seconds, conn)
        try:
            yield
        finally:
            with self._lock:  # under the lock: a connection handed back is never cut by mistake
                self._watched.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            now, cut = time.monotonic(), []
            with self._lock:
                for key, (deadline, seconds, conn) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[key]
                        if sever(conn):
                            cut.append(seconds)
            if cut:
                log.warning(
                    "action: base_de_datos | result: fail | error: no answer from the database in %.0f s "
                    "(%d connection(s)): cut, its host seems to hang; reconnecting",
                    max(cut),
                    len(cut),
                )
                self.on_cut()


def sever(conn: psycopg.Connection[Any]) -> bool:
    """Shut the connection's socket down (both ways), from any thread; False if already closed."""
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return False
    try:
        with socket.socket(fileno=os.dup(fd)) as dup:  # shutdown acts on the socket, not the fd
            dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True
