"""client/wire.py, the uploader's HTTP/1.1 client, against a scripted socket server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading

import pytest

from client.wire import ConnectError, Timeout, TransportError, Wire, split_url


class Scripted:
    """Accepts connections; for each request read, sends the next scripted answer (bytes, or None: close)."""

    def __init__(self, answers: list[bytes | None]):
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers:
                    request = self._read_request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    if answer is None:
                        break  # close without answering
                    conn.sendall(answer)
                    if b"Connection: close" in answer:
                        break

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return None
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        return data

    def close(self) -> None:
        self._listener.close()


def _wire(url: str, timeout: float = 5.0) -> Wire:
    return Wire(url, {"User-Agent": "test"}, timeout)


def test_a_request_and_its_content_length_answer_on_one_kept_connection() -> None:
    ok = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"stored": 2}'
    server = Scripted([ok, ok])
    wire = _wire(server.url)
    body = b"a,b,1,1990-01-01,1\n" * 5000  # big enough to be written apart from the head
    for _ in range(2):
        response = wire.request("POST", "/agencies/1/bets", content=body, headers={"Upload-Offset": "0"})
        assert (response.status_code, response.json(), response.reason_phrase) == (201, {"stored": 2}, "Created")
    assert server.connections == 1  # kept alive
    head, _, sent = server.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /agencies/1/bets HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nUpload-Offset: 0\r\n" in head and f"Content-Length: {len(body)}".encode() in head
    wire.close()
    server.close()


def test_chunked_answers_interim_answers_and_query_strings() -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3;x=1\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
    server = Scripted([chunked, interim])
    wire = _wire(server.url)
    assert wire.request("GET", "/x").json() == {"a": 1}
    assert wire.request("GET", "/agencies/1/winners", params={"wait": 30}).json() == []
    assert server.requests[1].startswith(b"GET /agencies/1/winners?wait=30 HTTP/1.1\r\n")
    server.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_silently() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    server = Scripted([ok, None, ok])  # the second request finds the connection closed
    wire = _wire(server.url)
    assert wire.request("GET", "/status").status_code == 200
    assert wire.request("GET", "/status").status_code == 200
    assert server.connections == 2
    server.close()


def test_an_answer_sent_before_the_body_was_read_is_the_outcome() -> None:
    """A server that refuses a body by its Content-Length answers and closes while the body is still sent."""
    listener = socket.create_server(("127.0.0.1", 0))

    def refuse() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            conn.shutdown(socket.SHUT_WR)
            # Closing with unread data resets the connection: the client's send fails mid-body.

    threading.Thread(target=refuse, daemon=True).start()
    wire = _wire(f"http://127.0.0.1:{listener.getsockname()[1]}")
    response = wire.request("POST", "/agencies/1/bets", content=b"x" * (64 << 20))
    assert response.status_code == 413
    listener.close()


def test_connection_close_and_until_close_bodies() -> None:
    server = Scripted([b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"done": true}', None])
    wire = _wire(server.url)
    assert wire.request("GET", "/status").json() == {"done": True}
    server.close()


def test_failures_are_transport_errors_of_their_kind() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError):
        _wire(f"http://127.0.0.1:{port}").request("GET", "/status")

    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    with pytest.raises(Timeout):
        _wire(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3).request("GET", "/status")
    silent.close()

    server = Scripted([b"SSH-2.0-OpenSSH\r\n\r\n"])
    with pytest.raises(TransportError, match="not an HTTP response"):
        _wire(server.url).request("GET", "/status")
    server.close()


@pytest.mark.parametrize(
    "url, parts",
    [
        ("http://127.0.0.1:8000", ("http", "127.0.0.1", 8000, "")),
        ("https://Lottery.Example", ("https", "lottery.example", 443, "")),
        ("http://lottery.example/api/", ("http", "lottery.example", 80, "/api")),
        ("http://[::1]:9000/x", ("http", "::1", 9000, "/x")),
        ("http://user@host:81", ("http", "host", 81, "")),
    ],
)
def test_server_urls(url: str, parts: tuple) -> None:
    assert split_url(url) == parts


def test_a_bad_server_url_is_an_error() -> None:
    for url in ("ftp://x", "127.0.0.1:8000", "http://host:port"):
        with pytest.raises(ValueError):
            split_url(url)
