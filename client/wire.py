"""A small HTTP/1.1 client on the standard library: keep-alive connections, one per thread, TLS.

Why not httpx: the uploader's whole job is a few dozen requests, and importing httpx (with
httpcore, h11, anyio, idna, certifi) cost more CPU than uploading a 100k-bet file (issue 15).
This speaks exactly the HTTP the uploader needs: a request with a Content-Length body, and a
response with Content-Length, chunked or until-close framing. Errors are :class:`TransportError`
(connection refused, timed out, TLS refused), which the caller retries or reports.
"""

from __future__ import annotations

import json as _json
import socket
import threading

MAX_HEADER_LINE = 65536


class TransportError(Exception):
    """No HTTP answer: the connection failed, broke or timed out."""


class ConnectError(TransportError):
    """The server could not be reached (refused, unknown host, TLS handshake refused)."""


class Timeout(TransportError):
    """No answer within the request's timeout."""


class Request:
    __slots__ = ("method", "path", "headers", "content")

    def __init__(self, method: str, path: str, headers: dict[str, str], content: bytes):
        self.method = method
        self.path = path  # with its query string
        self.headers = headers
        self.content = content


class Response:
    __slots__ = ("status_code", "headers", "content", "reason_phrase")

    def __init__(self, status_code: int, headers: dict[str, str] | None = None, content: bytes = b"", reason: str = ""):
        self.status_code = status_code
        self.headers = headers or {}  # names lower-cased
        self.content = content
        self.reason_phrase = reason

    def json(self):
        return _json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @classmethod
    def of_json(cls, status_code: int, data, headers: dict[str, str] | None = None) -> Response:
        """A JSON response (for fake servers in tests)."""
        return cls(status_code, {k.lower(): v for k, v in (headers or {}).items()}, _json.dumps(data).encode())


class Wire:
    """Requests to one server; ``handler`` (a function Request -> Response) replaces the network in tests."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, ssl_context=None, handler=None):
        self.scheme, self.host, self.port, self.prefix = split_url(base_url)
        default_port = (self.scheme == "https" and self.port == 443) or (self.scheme == "http" and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.headers = {"Host": host if default_port else f"{host}:{self.port}", **headers}
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.handler = handler
        self._local = threading.local()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        content: bytes = b"",
        json=None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        if json is not None:
            content = _json.dumps(json).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        target = self.prefix + path + ("?" + _query(params) if params else "")
        all_headers = {**self.headers, **(headers or {})}
        if self.handler is not None:
            return self.handler(Request(method, target, all_headers, content))
        head = f"{method} {target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
        head += f"Content-Length: {len(content)}\r\n\r\n" if content or method in ("POST", "PUT") else "\r\n"
        return self._exchange(head.encode("latin-1"), content, timeout or self.timeout)

    def _exchange(self, head: bytes, body: bytes, timeout: float) -> Response:
        conn = getattr(self._local, "conn", None)
        if conn is not None and _stale(conn[0]):
            self._drop()
            conn = None
        reused = conn is not None
        for _ in range(2):
            if conn is None:
                conn = self._connect(timeout)
            sock, reader = conn
            started = False
            try:
                sock.settimeout(timeout)
                try:
                    if len(body) < 65536:
                        sock.sendall(head + body)
                    else:  # no copy of a big body; TCP_NODELAY keeps the two writes from waiting on each other
                        sock.sendall(head)
                        sock.sendall(body)
                except (BrokenPipeError, ConnectionResetError):
                    # The server may answer early and close (413 for a body it will not read): its
                    # answer, if it sent one, is the outcome; reading it says so, or fails as well.
                    pass
                status_line = reader.readline(MAX_HEADER_LINE)
                started = bool(status_line)
                if not started:
                    raise ConnectionResetError("the server closed the connection")
                response, keep = _read_response(status_line, reader)
            except TimeoutError as error:  # socket.timeout is TimeoutError
                self._drop()
                raise Timeout(f"timed out after {timeout:g}s") from error
            except (OSError, ValueError) as error:
                self._drop()
                if reused and not started:  # a kept-alive connection the server had closed: once more, fresh
                    reused, conn = False, None
                    continue
                raise TransportError(f"{type(error).__name__}: {error}") from error
            if not keep:
                self._drop()
            return response
        raise AssertionError("unreachable")

    def _connect(self, timeout: float):
        try:
            # An ASCII host as bytes: a str host makes the socket module import the idna codec.
            host = self.host.encode("ascii") if self.host.isascii() else self.host
            sock = socket.create_connection((host, self.port), timeout=timeout)
        except TimeoutError as error:
            raise Timeout(f"connecting timed out after {timeout:g}s") from error
        except OSError as error:
            raise ConnectError(str(error)) from error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.scheme == "https":
            try:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            except OSError as error:  # ssl.SSLError included: the handshake failed
                sock.close()
                raise ConnectError(str(error)) from error
        conn = (sock, sock.makefile("rb"))
        self._local.conn = conn
        with self._lock:
            self._open.add(sock)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._open.discard(conn[0])
            conn[1].close()
            conn[0].close()

    def close(self) -> None:
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of ``http[s]://host[:port][/prefix]``; hosts may be ``[v6]``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        host, _, after = authority[1:].partition("]")
        port = after[1:] if after.startswith(":") else ""
    else:
        host, _, port = authority.partition(":")
    default = 443 if scheme == "https" else 80
    if port and not port.isdigit():
        raise ValueError(f"bad port in URL {url!r}")
    prefix = ("/" + path).rstrip("/") if slash else ""
    return scheme, host.lower() or "127.0.0.1", int(port) if port else default, prefix


def _query(params: dict) -> str:
    from urllib.parse import quote  # only for values that need it

    return "&".join(f"{k}={v}" if str(v).isalnum() else f"{k}={quote(str(v))}" for k, v in params.items())


def _stale(sock: socket.socket) -> bool:
    """An idle kept-alive connection that is readable was closed by the server (or is out of step)."""
    import select

    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _read_response(status_line: bytes, reader) -> tuple[Response, bool]:
    """The response after its status line, and whether the connection may be kept."""
    while True:
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        while True:
            line = reader.readline(MAX_HEADER_LINE)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ConnectionResetError("the connection closed inside the response headers")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(code)
        if 100 <= status < 200:  # an interim answer: the real one follows
            status_line = reader.readline(MAX_HEADER_LINE)
            continue
        break
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if headers.get("transfer-encoding", "").lower() == "chunked":
        content = _read_chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        content = reader.read(length)
        if len(content) != length:
            raise ConnectionResetError("the connection closed inside the response body")
    elif status in (204, 304):
        content = b""
    else:
        content, keep = reader.read(), False
    return Response(status, headers, content, reason), keep


def _read_chunked(reader) -> bytes:
    parts = []
    while True:
        size = int(reader.readline(MAX_HEADER_LINE).split(b";")[0].strip() or b"x", 16)
        if size == 0:
            while reader.readline(MAX_HEADER_LINE) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        parts.append(reader.read(size))
        reader.readline(MAX_HEADER_LINE)
