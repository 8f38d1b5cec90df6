"""Pipelined requests on one keep-alive connection (issue 9, item 4).

The header deadline (LOTTERY_HEADER_TIMEOUT) is for a client that is slow to send a request
head while the connection waits for one. It must never fire while an earlier request of the
same connection is being served: a raw 408 written then would be read by the client as the
answer to its complete first request (a stored chunk reported as 408).
"""

from __future__ import annotations

import socket

import filelock
import pytest

from devtools.server import Server
from tests.helpers import round_file

HEADER_TIMEOUT = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("pipelining") / "data"
    env = {"LOTTERY_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    with Server(data, workers=2, agencies=2, env=env) as running:
        yield running


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from ``sock``; leftovers stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a whole head: {bytes(buffer)!r}")
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed inside a body")
        rest += data
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def test_a_long_poll_is_answered_before_a_slow_pipelined_head(server: Server) -> None:
    wait = 3 * HEADER_TIMEOUT  # the poll outlives the header deadline: it must not be cut by it
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET /agencies/1/winners?wait={wait} HTTP/1.1\r\nHost: x\r\n\r\nGET /sta".encode())
        buffer = bytearray()
        status, headers, body = read_response(sock, buffer)
        assert status == 425, (status, body)
        assert headers["retry-after"] == "1"
        # Only now does the connection wait for the second head: that one may be cut off.
        rest = bytes(buffer)
        while data := sock.recv(65536):
            rest += data
        assert rest.startswith(b"HTTP/1.1 408 ")


def test_a_stored_chunk_is_never_reported_as_408(server: Server) -> None:
    body = b"Ana,Gomez,30904465,1999-03-17,7574\n"
    request = (
        b"POST /agencies/2/bets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body + b"GET /sta"
    )
    # The storage lock held here keeps the chunk being served for longer than the header deadline.
    lock = filelock.FileLock(str(round_file(server.data_dir, ".lock")))  # the current round's storage lock
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        with lock:
            sock.sendall(request)
            sock.settimeout(3 * HEADER_TIMEOUT)
            with pytest.raises(TimeoutError):  # nothing may be written while the chunk waits
                sock.recv(65536)
        sock.settimeout(30)
        buffer = bytearray()
        status, _, answer = read_response(sock, buffer)
        assert (status, answer[: answer.index(b',"log":')]) == (201, b'{"agency":2,"stored":1')
    assert "Traceback" not in server.log()
