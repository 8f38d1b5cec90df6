"""Slow and oversized clients against real gunicorn: they get an answer and lose their slot."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from devtools.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("limits") / "data"
    env = {"LOTTERY_HEADER_TIMEOUT": "1", "LOTTERY_BODY_TIMEOUT": "1", "LOTTERY_MAX_BODY_BYTES": "65536"}
    with Server(data, workers=2, agencies=2, env=env) as running:
        yield running


def _exchange(server: Server, data: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` and read until the server closes; the reply and how long it took."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        started = time.monotonic()
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply, time.monotonic() - started


def test_headers_that_never_finish_are_cut_off(server: Server) -> None:
    reply, took = _exchange(server, b"POST /agencies/1/bets HTTP/1.1\r\nHost: x\r\nContent-Ty")
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert 0.9 <= took < 3


def test_a_silent_connection_is_cut_off(server: Server) -> None:
    reply, took = _exchange(server, b"")
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert 0.9 <= took < 3


def test_a_body_that_trickles_gets_408_problem(server: Server) -> None:
    head = b"POST /agencies/1/bets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nAna,G"
    reply, took = _exchange(server, head)
    status, _, rest = reply.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    problem = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert problem["status"] == 408 and "did not arrive within 1 seconds" in problem["detail"]
    assert took < 4
    assert httpx.get(server.url + "/status").json()["bets"] == 0


def test_an_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    # Only the head is sent: the 413 must come from Content-Length alone.
    head = b"POST /agencies/1/bets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 20000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        reply = sock.recv(65536)
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
        head_part, _, body = reply.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1] for line in head_part.split(b"\r\n") if line.lower().startswith(b"content-length:")
            )
        )
        while len(body) < length:  # the body may come in a segment of its own
            body += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["detail"] == "the body is 20000000 bytes; the limit is 65536 bytes"


def test_a_chunked_body_is_cut_at_the_limit(server: Server) -> None:
    def body():
        line = b"Ana,Gomez,12345678,1990-01-01,5\n" * 100
        for _ in range(100):  # 320 kB in all, over the 64 kB limit
            yield line

    response = httpx.post(server.url + "/agencies/1/bets", content=body(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    assert response.json()["detail"] == "the body is over the limit of 65536 bytes"
    assert httpx.get(server.url + "/status").json()["bets"] == 0


def test_ordinary_keep_alive_clients_are_not_affected(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(0.6)  # idle between requests, under the keep-alive timeout


@pytest.mark.parametrize("agency", ["%2531", "%201", "1%2E0", "%2B1", "1_0", "01", "%EF%BC%91", "1%00"])
def test_only_plain_digits_name_an_agency_over_the_wire(server: Server, agency: str) -> None:
    # Raw paths, percent-encoded as a client may send them; the in-process test cannot send
    # '%25' faithfully (Starlette's TestClient unquotes twice), the real server can.
    request = (
        f"POST /agencies/{agency}/bets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        f"Content-Length: 35\r\nConnection: close\r\n\r\nAna,Gomez,30904465,1999-03-17,7574\n"
    ).encode()
    reply, _ = _exchange(server, request)
    assert reply.startswith(b"HTTP/1.1 404 "), reply
    assert httpx.get(server.url + "/status").json()["bets"] == 0


def test_no_slow_or_oversized_client_caused_a_traceback(server: Server) -> None:
    # Runs last in this module, after every slow and oversized client above.
    assert "Traceback" not in server.log()
