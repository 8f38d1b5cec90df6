"""One agency of the raw-TCP reference round: upload a bets file, then ask for winners.

Usage::

    python -m reference.rawtcp.agency --host 127.0.0.1 --port P --agency K --file agency-K.csv

The file (CSV lines ``first_name,last_name,document,birthdate,number``, LF or CRLF)
is streamed, never loaded whole: as many whole lines as fit are packed into each
≤ 8 kB batch frame, and each frame waits for its ack before the next one is sent
(stop-and-wait, as in the course). Then the agency sends "done" and polls for its
winners every ``--poll-interval`` seconds, prints::

    action: consulta_ganadores | result: success | cant_ganadores: N

to stdout and exits 0. Any failure, or exceeding ``--timeout`` overall, exits 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from app.logs import DATEFMT, FORMAT
from reference.rawtcp import protocol as proto

CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 300.0
DEFAULT_POLL_INTERVAL = 0.05

log = logging.getLogger("rawtcp.agency")


class ServerError(Exception):
    """The server answered with an error frame or an unexpected message."""


def iter_batches(path: Path) -> Iterator[bytes]:
    """Yield B frame payloads packing as many whole lines of ``path`` as fit.

    Works on bytes: the lines go out exactly as stored (minus CR/LF), without a
    decode/encode round trip; the server validates UTF-8 and the CSV syntax.
    Blank lines are skipped.
    """
    room = proto.MAX_PAYLOAD
    parts: list[bytes] = [proto.BATCH]
    size = len(proto.BATCH)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip(b"\r\n")
            if not line:
                continue
            need = len(line) + 1  # + LF
            if len(proto.BATCH) + need > room:
                raise ValueError(f"{path}:{lineno}: line of {len(line)} bytes does not fit in a frame")
            if size + need > room:
                yield b"".join(parts)
                parts, size = [proto.BATCH], len(proto.BATCH)
            parts += (line, b"\n")
            size += need
    if size > len(proto.BATCH):
        yield b"".join(parts)


class Agency:
    """A connected agency; every operation is bounded by the overall deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("agency deadline exceeded")
        return left

    def _recv(self) -> tuple[bytes, bytes]:
        self.sock.settimeout(self._remaining())
        payload = proto.recv_frame(self.sock)
        if payload is None:
            raise ConnectionError("server closed the connection")
        tag, body = payload[:1], payload[1:]
        if tag == proto.ERROR:
            raise ServerError(f"server error: {body.decode('utf-8', 'replace')}")
        return tag, body

    def request(self, payload: bytes, expect: bytes = proto.ACK) -> bytes:
        """Send one frame and wait for its reply (stop-and-wait)."""
        self.sock.settimeout(self._remaining())
        proto.send_frame(self.sock, payload)
        tag, body = self._recv()
        if tag != expect:
            raise ServerError(f"expected {expect!r}, got {tag!r}")
        return body

    def winners(self, poll_interval: float) -> list[str]:
        """Poll until the draw happened; return this agency's winning documents."""
        while True:
            self.sock.settimeout(self._remaining())
            proto.send_frame(self.sock, proto.WINNERS)
            tag, body = self._recv()
            if tag == proto.NOT_YET:
                time.sleep(min(poll_interval, self._remaining()))
                continue
            documents: list[str] = []
            while True:
                if tag not in (proto.PARTIAL, proto.REPLY):
                    raise ServerError(f"unexpected reply {tag!r} to a winners query")
                if body:
                    documents += body.decode("utf-8").split("\n")
                if tag == proto.REPLY:
                    return documents
                tag, body = self._recv()


def run(host: str, port: int, agency: int, path: Path, *, timeout: float, poll_interval: float) -> list[str]:
    """Upload ``path`` as ``agency`` and return its winning documents."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=min(CONNECT_TIMEOUT, timeout)) as sock:
        # Request/response traffic: do not let Nagle hold back a frame's tail.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Agency(sock, deadline)
        conn.request(proto.HELLO + str(agency).encode("ascii"))
        frames = 0
        for payload in iter_batches(path):
            conn.request(payload)
            frames += 1
        conn.request(proto.DONE)
        log.info("action: envio_apuestas | result: success | frames: %d", frames)
        return conn.winners(poll_interval)


def _loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"{host} is not a loopback address")
    return host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.rawtcp.agency", description=__doc__.splitlines()[0])
    parser.add_argument("--host", type=_loopback, default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--agency", type=int, required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="overall limit, seconds")
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL, help="seconds")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format=FORMAT,
        datefmt=DATEFMT,
    )
    try:
        documents = run(
            args.host, args.port, args.agency, args.file, timeout=args.timeout, poll_interval=args.poll_interval
        )
    except (OSError, ValueError, ServerError, proto.ProtocolError) as e:
        log.error("action: consulta_ganadores | result: fail | agencia: %d | error: %s", args.agency, e)
        return 1
    print(f"action: consulta_ganadores | result: success | cant_ganadores: {len(documents)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
