"""Fork-per-connection TCP server of the raw-TCP reference round.

Usage::

    python -m reference.rawtcp.server --host 127.0.0.1 --port 0 --data-dir DIR \\
        --agencies N [--winning-number N] [--port-file FILE]

The parent only accepts connections and forks one child per connection (one
connection = one agency, see :mod:`reference.rawtcp.protocol`); on SIGCHLD it reaps
them with ``waitpid(WNOHANG)``, so no zombies pile up. Children share state only through files in DIR, guarded by
``flock(LOCK_EX)`` on ``DIR/bets.lock``:

* ``bets.csv``    rows ``agency,first_name,last_name,document,birthdate,number``;
  each batch frame is appended with one ``write`` under the lock, then fsynced
  before the ack.
* ``done.txt``    ids of the agencies that finished sending, one per line.
* ``winners.json`` written (temp file + ``os.replace``) by the child that records the
  last agency in ``done.txt``, which performs the draw while holding the lock.

Starting the server starts a new round: it truncates ``bets.csv`` and removes
``done.txt`` / ``winners.json`` from DIR. SIGTERM (or SIGINT) stops accepting,
terminates the children still running and reaps them, then exits 0.
Signals reach the parent's accept loop through a wakeup fd (see :func:`serve`).
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import io
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from app.atomicfile import fsync_dir, write_atomically
from app.domain import WINNING_NUMBER
from app.logs import DATEFMT, FORMAT
from reference.rawtcp import protocol as proto

BETS_FILE = "bets.csv"
DONE_FILE = "done.txt"
WINNERS_FILE = "winners.json"
LOCK_FILE = "bets.lock"

IO_TIMEOUT = 30.0  # a child gives up on an agency silent for this long
LOCK_TIMEOUT = 30.0  # ...and on a lock it cannot get for this long
STOP_GRACE = 5.0  # on shutdown, time left to terminated children before SIGKILL
BET_FIELDS = 5

# Signals the parent handles. They are kept blocked around fork() so that none
# reaches the child before it has restored the default dispositions (a SIGTERM
# meant for a child must not be reported to the parent through the wakeup fd).
_GUARDED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
_STOP = {signal.SIGTERM, signal.SIGINT}

log = logging.getLogger("rawtcp.server")


@dataclass(frozen=True)
class Config:
    data_dir: Path
    agencies: int
    winning_number: int


class BadRequest(Exception):
    """The agency sent something we refuse; it gets an E frame and the connection ends."""


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, data: bytes) -> None:
    """Durably replace ``path`` with ``data``: readers see the old or the new file, never half."""
    write_atomically(path, lambda f: f.write(data))


def _write_all(fd: int, data: bytes) -> None:
    """One write() per frame; the loop only matters if the kernel ever writes short."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise TimeoutError(f"no lock on {LOCK_FILE} within {LOCK_TIMEOUT} s")


def prepare_data_dir(data_dir: Path) -> None:
    """Start a new round: empty bets file, no done/winners files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in (DONE_FILE, WINNERS_FILE):
        (data_dir / name).unlink(missing_ok=True)
    with open(data_dir / BETS_FILE, "wb") as f:
        os.fsync(f.fileno())
    (data_dir / LOCK_FILE).touch()
    fsync_dir(data_dir)


class Store:
    """One child's handles on the shared files.

    Opened *after* fork: flock() locks belong to the open file description, so if
    the children inherited the parent's lock descriptor they would all share one
    lock and exclude nobody.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        d = cfg.data_dir
        self._bets = d / BETS_FILE
        self._done = d / DONE_FILE
        self._winners = d / WINNERS_FILE
        self._lock_fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # O_APPEND: each write lands at the current end of the file, which other
        # children keep moving.
        self._bets_fd = os.open(self._bets, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self._bets_fd)
        os.close(self._lock_fd)

    @contextmanager
    def locked(self) -> Iterator[None]:
        # flock() has no timeout of its own; an interval timer interrupts it instead.
        signal.setitimer(signal.ITIMER_REAL, LOCK_TIMEOUT)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def append_bets(self, rows: bytes) -> None:
        """Append one frame's rows durably; returns once they are on disk."""
        with self.locked():
            if self._winners.exists():
                raise BadRequest("the draw already took place, no more bets accepted")
            _write_all(self._bets_fd, rows)
        # fsync after releasing the lock: the lock is what keeps frames whole and
        # ordered; the flush needs no exclusion, and outside the lock concurrent
        # agencies' fsyncs can overlap instead of queueing behind each other.
        # Durability is the same: the ack goes out only after this returns.
        os.fsync(self._bets_fd)

    def record_done(self, agency: int) -> bool:
        """Record that ``agency`` finished; run the draw if it was the last one. True if drawn."""
        with self.locked():
            try:
                done = {int(line) for line in self._done.read_text().split()}
            except FileNotFoundError:
                done = set()
            if agency not in done:
                with open(self._done, "a") as f:
                    f.write(f"{agency}\n")
                    f.flush()
                    os.fsync(f.fileno())
                done.add(agency)
            if len(done) == self.cfg.agencies and not self._winners.exists():
                self._draw()
                return True
        return False

    def _draw(self) -> None:
        """Stream bets.csv and store each agency's winning documents. Caller holds the lock."""
        winners: dict[str, list[str]] = {str(a): [] for a in range(1, self.cfg.agencies + 1)}
        target = self.cfg.winning_number
        with open(self._bets, newline="", encoding="utf-8") as f:
            for agency, _first, _last, document, _birth, number in csv.reader(f):
                if int(number) == target:
                    winners.setdefault(agency, []).append(document)
        doc = {"winning_number": target, "winners": winners}
        _write_atomic(self._winners, json.dumps(doc, ensure_ascii=False).encode("utf-8"))

    def winners_of(self, agency: int) -> list[str] | None:
        """The agency's winning documents, or None before the draw (no lock: the file
        appears atomically through os.replace)."""
        try:
            with open(self._winners, encoding="utf-8") as f:
                return list(json.load(f)["winners"].get(str(agency), []))
        except FileNotFoundError:
            return None


# --------------------------------------------------------------------------- connection


def parse_batch(body: bytes, agency: int) -> tuple[bytes, int]:
    """Turn a B frame body into bets.csv rows (agency prepended); return (rows, count)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"batch is not valid UTF-8: {e}") from None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    prefix = str(agency)
    count = 0
    # newline="": the csv module does its own line splitting (and quote handling).
    for row in csv.reader(io.StringIO(text, newline="")):
        if len(row) != BET_FIELDS:
            raise BadRequest(f"bet with {len(row)} fields instead of {BET_FIELDS}: {row!r:.200}")
        number = row[4]
        if not (number.isascii() and number.isdigit()):
            raise BadRequest(f"bet number is not a non-negative integer: {number!r:.50}")
        writer.writerow([prefix, *row])
        count += 1
    return out.getvalue().encode("utf-8"), count


def _send_winners(conn: socket.socket, documents: list[str]) -> None:
    """Send the winners as P* R frames, packing whole documents into each frame."""
    room = proto.MAX_PAYLOAD - 1
    chunk: list[bytes] = []
    size = 0
    for doc in documents:
        item = doc.encode("utf-8")
        if len(item) >= room:
            raise BadRequest(f"document too long to send: {doc!r:.50}")
        if chunk and size + 1 + len(item) > room:
            proto.send_frame(conn, proto.PARTIAL + b"\n".join(chunk))
            chunk, size = [], 0
        size += len(item) + (1 if chunk else 0)
        chunk.append(item)
    proto.send_frame(conn, proto.REPLY + b"\n".join(chunk))


def _read_hello(conn: socket.socket, cfg: Config) -> int:
    payload = proto.recv_frame(conn)
    if payload is None:
        raise ConnectionError("agency closed the connection before saying hello")
    tag, body = payload[:1], payload[1:]
    if tag != proto.HELLO:
        raise BadRequest(f"expected hello, got message {tag!r}")
    try:
        agency = int(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(f"invalid agency id {body!r:.50}") from None
    if not 1 <= agency <= cfg.agencies:
        raise BadRequest(f"agency id {agency} outside 1..{cfg.agencies}")
    return agency


def serve_connection(conn: socket.socket, store: Store, cfg: Config) -> None:
    """Run one agency's conversation until it disconnects."""
    agency = _read_hello(conn, cfg)
    proto.send_frame(conn, proto.ACK)
    while (payload := proto.recv_frame(conn)) is not None:
        tag, body = payload[:1], payload[1:]
        if tag == proto.BATCH:
            try:
                rows, count = parse_batch(body, agency)
            except BadRequest:
                log.error("action: apuesta_recibida | result: fail | agencia: %d", agency)
                raise
            store.append_bets(rows)
            proto.send_frame(conn, proto.ACK)
            log.info("action: apuesta_recibida | result: success | cantidad: %d", count)
        elif tag == proto.DONE:
            drawn = store.record_done(agency)
            log.info("action: fin_apuestas | result: success | agencia: %d", agency)
            if drawn:
                log.info("action: sorteo | result: success")
            proto.send_frame(conn, proto.ACK)
        elif tag == proto.WINNERS:
            documents = store.winners_of(agency)
            if documents is None:
                proto.send_frame(conn, proto.NOT_YET)
            else:
                _send_winners(conn, documents)
                log.info(
                    "action: consulta_ganadores | result: success | agencia: %d | cant_ganadores: %d",
                    agency,
                    len(documents),
                )
        else:
            raise BadRequest(f"unexpected message type {tag!r}")


def _child(conn: socket.socket, inherited: list[socket.socket], cfg: Config) -> None:
    """Body of a forked child; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in _GUARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _GUARDED)
        for sock in inherited:  # the parent's listener and wakeup sockets
            sock.close()
        conn.settimeout(IO_TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        store = Store(cfg)
        try:
            serve_connection(conn, store, cfg)
            code = 0
        except BadRequest as e:
            log.error("action: conexion | result: fail | error: %s", e)
            try:
                proto.send_frame(conn, proto.ERROR + str(e).encode("utf-8")[: proto.MAX_PAYLOAD - 1])
            except OSError:
                pass
        except (OSError, proto.ProtocolError) as e:  # includes timeouts and resets
            log.error("action: conexion | result: fail | error: %s", e)
        finally:
            store.close()
    except BaseException:
        log.exception("action: conexion | result: fail")
    finally:
        conn.close()
        os._exit(code)  # never run the parent's cleanup code in a child


# --------------------------------------------------------------------------- parent


def _reap(children: set[int]) -> None:
    """Collect every exited child without blocking (so no zombies accumulate)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)


def _stop_children(children: set[int]) -> None:
    """SIGTERM the children still running, wait a bounded time, SIGKILL stragglers."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # we reap synchronously from here on
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    while True:
        _reap(children)
        if not children or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # bounded: SIGKILL cannot be ignored
        except (ProcessLookupError, ChildProcessError):
            pass
        children.discard(pid)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Python-level no-op; the C-level handler already wrote the signal to the wakeup fd."""


def serve(listener: socket.socket, cfg: Config) -> None:
    """Accept and fork until SIGTERM/SIGINT.

    Signals are handled synchronously (self-pipe pattern): the C handlers write the
    signal numbers to a socketpair that the loop selects on together with the
    listener. Reaping and shutdown therefore never interrupt the loop half-way
    (e.g. between waitpid() and the bookkeeping of the reaped pid).
    """
    children: set[int] = set()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    listener.setblocking(False)
    for sig in _GUARDED:
        signal.signal(sig, _ignore)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    try:
        while True:
            ready, _, _ = select.select([listener, wake_r], [], [])
            if wake_r in ready:
                signums = wake_r.recv(256)
                _reap(children)
                stop = next((signal.Signals(n).name for n in signums if n in _STOP), None)
                if stop is not None:
                    break
            if listener in ready:
                try:
                    conn, _addr = listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue  # the client went away between select() and accept()
                signal.pthread_sigmask(signal.SIG_BLOCK, _GUARDED)
                try:
                    pid = os.fork()
                    if pid == 0:
                        _child(conn, [listener, wake_r, wake_w], cfg)
                    children.add(pid)
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, _GUARDED)
                    conn.close()
        log.info("action: shutdown | result: in_progress | signal: %s", stop)
    finally:
        # From here on a second SIGTERM must not abort the (bounded) cleanup.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        listener.close()
        _stop_children(children)
        wake_r.close()
        wake_w.close()
    log.info("action: shutdown | result: success")


def _loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"{host} is not a loopback address")
    return host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.rawtcp.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", type=_loopback, default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 = pick an ephemeral port")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--agencies", type=int, required=True, help="agencies in the round (ids 1..N)")
    parser.add_argument("--winning-number", type=int, default=WINNING_NUMBER)
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.agencies < 1:
        parser.error("--agencies must be at least 1")

    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format=FORMAT,
        datefmt=DATEFMT,
    )
    cfg = Config(args.data_dir, args.agencies, args.winning_number)
    prepare_data_dir(cfg.data_dir)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(128)
    host, port = listener.getsockname()
    if args.port_file:
        # Atomic, so a poller never reads a half-written number.
        _write_atomic(args.port_file, f"{port}\n".encode())
    print(f"listening on {host}:{port}", flush=True)
    log.info("action: listen | result: success | address: %s:%d | agencies: %d", host, port, cfg.agencies)
    serve(listener, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
