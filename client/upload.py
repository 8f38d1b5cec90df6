"""Upload one agency file: exactly once, resumable, one chunk ahead in memory.

The protocol (README "Uploader protocol"), tus-style:

1. The file is read once to hash it: ``Upload-Id`` = ``sha256-<hash>`` names *this content*.
   The same pass counts the bets (for the progress bar) and checks the CSV shape, so a
   malformed file fails before anything is sent.
2. ``GET /agencies/{a}/uploads/{id}`` says which line ranges are already stored.
3. The file is read again and cut into chunks of at most ``batch_size`` bets that avoid
   every stored range. Each chunk carries ``Upload-Offset`` (index of its first bet) and an
   ``Idempotency-Key`` naming its range; the server refuses to store a bet index twice.
4. Once every chunk is acknowledged: ``done``, then the winners.

Whatever the batch size or concurrency of a rerun, a bet index is stored at most once.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from client.http import Api, ClientError, Rejected, Stopped

log = logging.getLogger("client")
READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileScan:
    upload_id: str
    bets: int


@dataclass(frozen=True)
class Piece:
    """Bets ``[start, start + len(lines))`` of the file; ``numbers`` are their file line numbers."""

    start: int
    lines: list[bytes]  # without their "\n"
    numbers: list[int]

    @property
    def end(self) -> int:
        return self.start + len(self.lines)

    def body(self) -> bytes:
        return b"\n".join(self.lines) + b"\n"


_ALL_BUT_COMMA_AND_NEWLINE = bytes(b for b in range(256) if b not in b",\n")


@dataclass(frozen=True)
class _Block:
    lines: list[bytes]  # the bet lines of one block of whole lines, without "\n"
    numbers: Sequence[int]  # their line numbers in the file


def _blocks(path: Path, digest=None) -> Iterator[_Block]:
    """The file's bet lines, a block at a time: all splitting and joining happen in C.

    Blank lines (empty or a lone CR) are skipped but keep their place in the numbering.
    """
    line = 1
    carry = b""
    with open(path, "rb") as f:
        while True:
            raw = f.read(READ_BLOCK)
            if digest is not None:
                digest.update(raw)
            data = carry + raw
            if raw:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
                if not data:
                    continue
            elif not data:
                return
            elif not data.endswith(b"\n"):
                data += b"\n"
            lines = data.split(b"\n")[:-1]
            if b"\n\n" in data or b"\n\r\n" in data or data.startswith((b"\n", b"\r\n")):
                kept = [(n, text) for n, text in enumerate(lines, line) if text not in (b"", b"\r")]
                yield _Block([text for _, text in kept], [n for n, _ in kept])
            else:
                yield _Block(lines, range(line, line + len(lines)))
            line += len(lines)
            if not raw:
                return


def _check_shape(path: Path, block: _Block) -> None:
    """Five CSV fields on every line, valid UTF-8: checked for the block in one pass when plain."""
    data = b"\n".join(block.lines) + b"\n"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        number = block.numbers[data.count(b"\n", 0, error.start)]
        raise ClientError(f"{path}:{number}: malformed CSV: not valid UTF-8") from None
    # Unquoted lines with exactly four commas each have five fields: deleting every other
    # byte must leave ",,,,\n" once per line (bytes.translate runs in C).
    if b'"' not in data and data.translate(None, _ALL_BUT_COMMA_AND_NEWLINE) == b",,,,\n" * len(block.lines):
        return
    for number, text in zip(block.numbers, block.lines, strict=False):  # find the line, and allow quoting
        try:
            fields = next(csv.reader([text.decode("utf-8")], strict=True))
        except csv.Error as error:
            raise ClientError(f"{path}:{number}: malformed CSV: {error}") from None
        if len(fields) != 5:
            raise ClientError(
                f"{path}:{number}: malformed CSV: {len(fields)} fields, expected 5 "
                "(first_name,last_name,document,birthdate,number)"
            )


def scan(path: Path) -> FileScan:
    """Hash, count and shape-check the file in one streaming pass."""
    digest = hashlib.sha256()
    bets = 0
    try:
        for block in _blocks(path, digest):
            _check_shape(path, block)
            bets += len(block.lines)
    except FileNotFoundError:
        raise ClientError(f"bets file not found: {path}") from None
    except IsADirectoryError:
        raise ClientError(f"bets file is a directory: {path}") from None
    except PermissionError:
        raise ClientError(f"bets file not readable: {path}") from None
    return FileScan("sha256-" + digest.hexdigest()[:40], bets)


def plan(path: Path, batch_size: int, committed: list[tuple[int, int]]) -> Iterator[Piece]:
    """Chunks of unsent bets, never crossing a stored range; streams the file."""
    stored = sorted(committed)
    r = 0  # first stored range that may still matter
    base = 0  # bet index of the current block's first line
    lines: list[bytes] = []
    numbers: list[int] = []
    start = 0
    for block in _blocks(path):
        count = len(block.lines)
        i = 0
        while i < count:
            bet = base + i
            while r < len(stored) and stored[r][1] <= bet:
                r += 1
            if r < len(stored) and stored[r][0] <= bet:  # already stored: skip it, close the chunk
                if lines:
                    yield Piece(start, lines, numbers)
                    lines, numbers = [], []
                i = min(count, stored[r][1] - base)
                continue
            free_until = count if r == len(stored) else min(count, stored[r][0] - base)
            take = min(free_until - i, batch_size - len(lines))
            if not lines:
                start = bet
            lines.extend(block.lines[i : i + take])
            numbers.extend(block.numbers[i : i + take])
            i += take
            if len(lines) == batch_size:
                yield Piece(start, lines, numbers)
                lines, numbers = [], []
        base += count
    if lines:
        yield Piece(start, lines, numbers)


class Uploader:
    def __init__(
        self,
        api: Api,
        agency: int,
        path: Path,
        batch_size: int,
        concurrency: int,
        upload_id: str | None = None,
        progress=None,
    ):
        self.api, self.agency, self.path = api, agency, path
        self.batch_size, self.concurrency = batch_size, concurrency
        self.forced_id = upload_id
        self.progress = progress
        self.sent = 0
        self._lock = threading.Lock()

    def run(self) -> int:
        """Send what the server lacks; return how many bets the file has."""
        scanned = scan(self.path)
        upload_id = self.forced_id or scanned.upload_id
        response = self.api.request("GET", f"/agencies/{self.agency}/uploads/{upload_id}")
        committed = [tuple(r) for r in response.json()["committed"]]
        already = sum(e - s for s, e in committed)
        log.info(
            "action: carga | result: in_progress | agencia: %d | upload_id: %s | apuestas: %d | ya_almacenadas: %d",
            self.agency,
            upload_id,
            scanned.bets,
            already,
        )
        if self.progress:
            self.progress.start(scanned.bets, already)
        self._send_all(upload_id, committed)
        return scanned.bets

    def _send_all(self, upload_id: str, committed: list[tuple[int, int]]) -> None:
        # At most `concurrency` chunks in flight plus the one being read: memory stays flat.
        slots = threading.BoundedSemaphore(self.concurrency)
        pending: set[Future] = set()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="chunk") as pool:
            try:
                for piece in plan(self.path, self.batch_size, committed):
                    while not slots.acquire(timeout=0.2):
                        self._raise_failures(pending)
                        if self.api.stop.is_set():
                            raise Stopped()
                    self._raise_failures(pending)
                    future = pool.submit(self._send, upload_id, piece)
                    future.add_done_callback(lambda _: slots.release())
                    pending.add(future)
                wait(pending, return_when=FIRST_EXCEPTION)
                self._raise_failures(pending)
            except BaseException:
                self.api.stop.set()  # let in-flight chunks give up their retries
                raise

    @staticmethod
    def _raise_failures(pending: set[Future]) -> None:
        for future in [f for f in pending if f.done()]:
            pending.discard(future)
            future.result()

    def _send(self, upload_id: str, piece: Piece) -> None:
        headers = {
            "Content-Type": "text/csv",
            "Upload-Id": upload_id,
            "Upload-Offset": str(piece.start),
            "Idempotency-Key": f"{upload_id}:{piece.start}-{piece.end}",
        }
        try:
            response = self.api.request("POST", f"/agencies/{self.agency}/bets", content=piece.body(), headers=headers)
        except Rejected as error:
            raise ClientError(self._explain(error, piece, upload_id)) from None
        stored = response.json()["stored"]
        with self._lock:
            self.sent += stored
            if self.progress:
                self.progress.advance(stored)

    def _explain(self, error: Rejected, piece: Piece, upload_id: str) -> str:
        """The server's reason, with the file's own line numbers."""
        lines = f"{self.path}:{piece.numbers[0]}-{piece.numbers[-1]}"
        problems = error.problem.get("errors") or []
        if problems:
            named = []
            for p in problems[:5]:
                index = p.get("index")
                where = (
                    f"{self.path}:{piece.numbers[index]}"
                    if isinstance(index, int) and index < len(piece.numbers)
                    else lines
                )
                named.append(f"{where}: {p.get('field')} {p.get('message')}")
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            return (
                f"chunk {lines} rejected ({error.status}): "
                + "; ".join(named)
                + more
                + f". Nothing of that chunk was stored; fix the file and rerun with --upload-id {upload_id}"
                " to send only what is missing"
            )
        return f"chunk {lines} rejected: {error}"
