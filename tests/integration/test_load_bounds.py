"""What one worker holds for its clients stays bounded (issue 10), against real gunicorn.

- the body budget: with room for N bodies, the N+1-th concurrent one gets 503 + Retry-After
  before it is read, stores nothing, and the first N are stored;
- a client that leaves mid-body or mid-poll costs one info line, no traceback;
- SIGTERM with a long poll open: the poll gets 503 + Retry-After at once and the server exits;
- slow bodies on routes that take none do not hold connections, and /health answers with
  the open-file limit at 256.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import socket
import time

import httpx
import pytest

from devtools.server import Server
from tests.helpers import without_log

BET = b"Ana,Gomez,30904465,1999-03-17,7574\n"


def wait_for_log(server: Server, pattern: str, count: int = 1, timeout: float = 20.0) -> list[str]:
    """The log lines matching ``pattern`` once there are ``count`` of them (an observed event)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in server.log().splitlines() if re.search(pattern, line)]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed before a whole head: {data!r}")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return int(lines[0].split()[1]), headers, body


def post_head(agency: int, length: int) -> bytes:
    return (
        f"POST /agencies/{agency}/bets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


# -- the body budget ------------------------------------------------------------------------


def test_the_body_that_does_not_fit_the_budget_gets_503_and_the_others_are_stored(tmp_path) -> None:
    bets = 1500
    body = BET * bets  # 52,500 bytes: two fit a budget of 2 x 64 KiB, not three
    env = {
        "LOTTERY_MAX_BODY_BYTES": str(64 * 1024),
        "LOTTERY_BODY_BUDGET_BYTES": str(2 * 64 * 1024),
        "LOTTERY_LOG_LEVEL": "DEBUG",
    }
    with Server(tmp_path / "data", workers=1, agencies=3, env=env) as server:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(2)]
        try:
            for agency, sock in enumerate(held, 1):  # two bodies admitted, half sent, held open
                sock.sendall(post_head(agency, len(body)) + body[: len(body) // 2])
            assert len(wait_for_log(server, r"action: cuerpo_admitido", 2)) == 2
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as third:
                third.sendall(post_head(3, len(body)) + body)
                status, headers, answer = read_response(third)
            assert status == 503, answer
            assert headers["retry-after"] == "1"
            assert json.loads(answer)["title"] == "Server busy"
            for agency, sock in enumerate(held, 1):
                sock.sendall(body[len(body) // 2 :])
                status, _, answer = read_response(sock)
                assert (status, without_log(json.loads(answer))) == (201, {"agency": agency, "stored": bets})
        finally:
            for sock in held:
                sock.close()
        assert httpx.get(server.url + "/status").json()["bets"] == 2 * bets  # nothing of agency 3
        assert len(wait_for_log(server, r"action: cuerpo_admitido", 3, timeout=1)) == 2  # the third never was
        assert "Traceback" not in server.log()


# -- clients that leave ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("bounds") / "data"
    with Server(data, workers=2, agencies=2, env={"LOTTERY_LOG_LEVEL": "DEBUG"}) as running:
        yield running


def test_a_client_that_leaves_mid_body_costs_one_info_line(server: Server) -> None:
    body = BET * 2000
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(post_head(1, len(body)) + body[: len(body) // 2])
        assert wait_for_log(server, r"action: cuerpo_admitido")  # the body is being read
    lines = wait_for_log(server, r"action: cliente_desconectado")
    assert len(lines) == 1 and "INFO" in lines[0] and "durante: body" in lines[0], lines
    time.sleep(0.5)  # anything the disconnect would log after its info line has had time to appear
    log = server.log()
    assert len(re.findall(r"cliente_desconectado", log)) == 1
    assert "Traceback" not in log and "error_interno" not in log and "apuesta_recibida" not in log
    assert httpx.get(server.url + "/status").json()["bets"] == 0


def test_a_long_poll_stops_when_its_client_leaves(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /agencies/2/winners?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for_log(server, r"consulta_ganadores \| result: en_espera \| agencia: 2")
    lines = wait_for_log(server, r"cliente_desconectado .*durante: long poll")
    assert len(lines) == 1, server.log()[-3000:]
    assert "Traceback" not in server.log()


# -- shutdown -------------------------------------------------------------------------------


def test_sigterm_answers_open_long_polls_at_once_and_the_server_exits(tmp_path) -> None:
    server = Server(tmp_path / "data", workers=2, agencies=2, env={"LOTTERY_LOG_LEVEL": "DEBUG"}).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"GET /agencies/1/winners?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wait_for_log(server, r"result: en_espera")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            status, headers, body = read_response(sock)
            assert status == 503, body
            assert headers["retry-after"] == "1" and headers["connection"] == "close"
            assert json.loads(body)["title"] == "Server stopping"
        assert server.proc.wait(timeout=10) == 0  # generous: the poll's 30 s never hold it
    finally:
        server.stop()
    assert "Traceback" not in server.log()


# -- slow clients ---------------------------------------------------------------------------


def test_slow_bodies_on_bodyless_routes_are_refused_and_health_still_answers(tmp_path) -> None:
    env = {"LOTTERY_BODY_TIMEOUT": "2", "LOTTERY_MAX_CONNECTIONS": "200"}
    with Server(tmp_path / "data", workers=2, agencies=2, env=env) as server:
        for pid in server.worker_pids():  # as under `ulimit -n 256`
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (256, 256))
        paths = ["/status", "/agencies/1/winners", "/health", "/agencies/1/uploads/u"]
        slow = []
        for i in range(100):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            sock.sendall(f"GET {paths[i % 4]} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nx".encode())
            slow.append(sock)
        try:
            assert httpx.get(server.url + "/health", timeout=5).status_code == 200
            for sock in slow:  # each is refused from its head, and closed: nothing waits for its body
                status, headers, body = read_response(sock)
                assert status == 413 and headers["connection"] == "close", body
                assert sock.recv(1) == b""
        finally:
            for sock in slow:
                sock.close()
        # A POST route that reads no body (done) with a trickled body: closed by the body deadline.
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"POST /agencies/2/done HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nx")
            data = b""
            while more := sock.recv(65536):
                data += more
            assert data.startswith(b"HTTP/1.1 200 ")
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        assert "Traceback" not in server.log()


def test_connections_over_the_limit_get_503_not_a_failed_accept(tmp_path) -> None:
    with Server(tmp_path / "data", workers=1, agencies=2, env={"LOTTERY_MAX_CONNECTIONS": "20"}) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(25)]
        try:
            assert httpx.get(server.url + "/health", timeout=5).status_code == 503
        finally:
            for sock in idle:
                sock.close()
        for _ in range(100):  # the closed connections are forgotten as the worker notices them
            if httpx.get(server.url + "/health", timeout=5).status_code == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("/health stayed 503 after the idle connections closed")
