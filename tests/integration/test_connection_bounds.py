"""Connection bounds that hold before a request head (issue 20, defects 3 and 4).

- The head deadline (LOTTERY_HEADER_TIMEOUT) counts from accept, a TLS handshake included: a
  connection that never sends its ClientHello is closed when the deadline passes, not after
  the event loop's own 60 s handshake timeout.
- LOTTERY_MAX_CONNECTIONS counts connections from accept: one over it is answered 503 (or
  closed) at once, so silent connections never hold the worker's file descriptors, and the
  limit is kept under the worker's open-file limit: accept never fails with EMFILE, which
  made the event loop reset every pending connection, `/health` included.
"""

from __future__ import annotations

import contextlib
import re
import resource
import selectors
import socket
import ssl
import time
from collections import Counter
from unittest import mock

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import limits
from app.limits import FD_MARGIN, MIN_BACKLOG
from devtools.server import Server
from tests.integration.test_tls import pki, trusting  # noqa: F401 - pki is a fixture

HEADER_TIMEOUT = 2.0
GRACE = 0.75  # the server's timers and a loaded 2-core machine; well under the old 60 s
SLOTS, TLS_WORKERS = 20, 2


@pytest.fixture(scope="module")
def https_server(pki, tmp_path_factory):  # noqa: F811 - the imported fixture
    cert, key, ca, _ = pki
    env = {
        "LOTTERY_TLS_CERT": str(cert),
        "LOTTERY_TLS_KEY": str(key),
        "LOTTERY_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "LOTTERY_MAX_CONNECTIONS": str(SLOTS),
    }
    data = tmp_path_factory.mktemp("tls-bounds") / "data"
    with Server(data, workers=TLS_WORKERS, agencies=2, env=env, verify=trusting(ca)) as server:
        yield server


def closed_after(sockets: list[socket.socket], opened: list[float], wait: float) -> list[float | None]:
    """Seconds from each socket's connect to its close by the server; None if still open after ``wait``."""
    closed: list[float | None] = [None] * len(sockets)
    with selectors.DefaultSelector() as sel:
        for i, sock in enumerate(sockets):
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, i)
        deadline = time.monotonic() + wait
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed[key.data] = time.monotonic() - opened[key.data]
                    sel.unregister(key.fileobj)
    return closed


def test_tls_connections_that_never_say_hello_are_closed_at_the_head_deadline(https_server: Server) -> None:
    """Those that got a slot, at the head deadline; those over the limit, at once (no handshake for them)."""
    silent = SLOTS * TLS_WORKERS + 20
    opened, sockets = [], []
    try:
        for _ in range(silent):
            opened.append(time.monotonic())
            sockets.append(socket.create_connection(("127.0.0.1", https_server.port), timeout=5))
        closed = closed_after(sockets, opened, HEADER_TIMEOUT + GRACE + (time.monotonic() - opened[0]))
    finally:
        for sock in sockets:
            sock.close()
    still_open = sum(t is None for t in closed)
    assert still_open == 0, f"{still_open} of {silent} silent TLS connections outlived the head deadline"
    at_once = [t for t in closed if t < HEADER_TIMEOUT / 2]  # type: ignore[operator]
    at_deadline = [t for t in closed if HEADER_TIMEOUT - 0.05 <= t <= HEADER_TIMEOUT + GRACE]  # type: ignore[operator]
    assert len(at_once) >= silent - SLOTS * TLS_WORKERS and len(at_once) + len(at_deadline) == silent, closed
    assert len(at_deadline) <= SLOTS * TLS_WORKERS, closed


def test_the_head_deadline_counts_the_handshake(https_server: Server, pki) -> None:  # noqa: F811
    """A client that says hello late and then sends no head is cut off the deadline after connecting."""
    late = 0.6 * HEADER_TIMEOUT  # the old deadline began only after the handshake: 1.6 x the timeout
    context = trusting(pki[2])
    with socket.create_connection(("127.0.0.1", https_server.port), timeout=10) as raw:
        opened = time.monotonic()
        time.sleep(late)  # the client's own slowness, not a wait for the server
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            reply = b""
            with contextlib.suppress(ssl.SSLError, ConnectionResetError):
                while more := tls.recv(65536):
                    reply += more
            took = time.monotonic() - opened
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert HEADER_TIMEOUT - 0.05 <= took <= HEADER_TIMEOUT + GRACE, took


def test_fresh_tls_clients_get_through_while_silent_ones_wait(https_server: Server, pki) -> None:  # noqa: F811
    silent = [socket.create_connection(("127.0.0.1", https_server.port), timeout=5) for _ in range(SLOTS // 2)]
    try:  # each request a new connection: a handshake that loses the ClientHello would hang
        statuses = [
            httpx.get(https_server.url + "/health", verify=trusting(pki[2]), timeout=5).status_code for _ in range(30)
        ]
    finally:
        for sock in silent:
            sock.close()
    assert statuses == [200] * 30


# -- silent connections and the open-file limit ---------------------------------------------

OPEN_FILES = 200  # each worker's RLIMIT_NOFILE, as under `ulimit -n 200`
FLOOD = 600  # silent connections: more than the two workers' 400 file descriptors together
WORKERS = 2


def answer(sock: socket.socket) -> int | str:
    """The status of the server's answer on ``sock``, or how the connection ended without one."""
    sock.settimeout(HEADER_TIMEOUT + 5)  # a connection that got a slot is answered 408 at the deadline
    data = b""
    try:
        while b"\r\n" not in data:
            if not (more := sock.recv(4096)):
                return "closed unanswered"
            data += more
    except OSError as error:
        return type(error).__name__
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "max_connections",
    [10, pytest.param(1000, marks=pytest.mark.long)],  # long: the short listen queue makes the flood wait
    ids=["limit under the open files", "limit over them"],
)
def test_a_flood_of_silent_connections_never_makes_health_fail(tmp_path, max_connections: int) -> None:
    env = {"LOTTERY_MAX_CONNECTIONS": str(max_connections), "LOTTERY_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    server = Server(tmp_path / "data", workers=WORKERS, agencies=2, env=env, open_files=OPEN_FILES)
    server.start()
    flood: list[socket.socket] = []
    try:
        health = []
        for i in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            if i % 50 == 49:
                try:  # a fresh client each time: 200, or 503 while the worker is full; never a failure
                    health.append(httpx.get(server.url + "/health", timeout=10).status_code)
                except httpx.HTTPError as error:
                    health.append(repr(error))
        assert set(health) <= {200, 503}, health
        # Each flood connection is answered: 503 at once, or 408 when its slot's head deadline
        # passes. None is closed unanswered, as libuv does to every pending connection on EMFILE.
        answers = Counter(answer(sock) for sock in flood)
        assert set(answers) == {408, 503}, answers
        logged = r"action: limite_conexiones \| result: success \| limite: (\d+) .* backlog: (\d+)"
        bounds = re.findall(logged, server.log())
        assert len(bounds) == WORKERS, server.log()
        for limit, backlog in bounds:  # the slots and one full listen queue fit the open files
            assert int(limit) <= max_connections and int(limit) + int(backlog) + FD_MARGIN < OPEN_FILES
    finally:
        for sock in flood:
            sock.close()
        server.stop()
    log = server.log()
    assert "Too many open files" not in log and "Traceback" not in log, log


@given(
    soft=st.integers(1, 2_000_000),
    held=st.integers(0, 200),
    wanted=st.integers(1, 1_000_000),
    backlog=st.integers(1, 65_535),
)
def test_the_connections_and_the_listen_queue_fit_the_open_files(soft, held, wanted, backlog) -> None:
    with (
        mock.patch.object(resource, "getrlimit", return_value=(soft, soft)),
        mock.patch.object(limits, "open_fds", return_value=held),
    ):
        bounds = limits.connection_bounds(wanted, backlog)
    free = soft - held - FD_MARGIN
    assert 1 <= bounds.connections <= wanted and bounds.open_files == soft
    assert min(backlog, MIN_BACKLOG) <= bounds.backlog <= backlog
    if free >= 2 * MIN_BACKLOG:  # room for anything at all: all of it fits
        assert bounds.connections + bounds.backlog <= free
        # and nothing is taken that was not needed: what was asked fits, or a share is left over
        assert bounds.connections == wanted or bounds.connections >= free - max(MIN_BACKLOG, free // 4)
        assert bounds.backlog == backlog or bounds.backlog >= min(backlog, free // 4)
