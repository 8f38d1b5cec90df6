"""Upload one agency file: exactly once, resumable, one chunk ahead in memory.

The protocol (README "Uploader protocol", CONTRACT-uploads), tus-style:

1. The file is read once to hash it: ``Upload-Id`` = ``sha256-<hash>`` names *this content*.
   The same pass numbers the bet lines (blank and header lines and a BOM get no number, see
   client/lines.py) and checks their CSV shape, so a malformed file fails before anything is sent.
2. ``GET /agencies/{a}/uploads/{id}`` says which ranges of bets are stored, with a digest of
   each; client/resume.py proves they are still this file's bets, or refuses.
3. The file is read again and cut into chunks of at most ``batch_size`` bets that avoid
   every stored range. Each chunk carries ``Upload-Offset`` (index of its first bet) and an
   ``Idempotency-Key`` naming its range; the server refuses to store a bet index twice.
4. Once every chunk is acknowledged: ``done``, then the winners.

Whatever the batch size or concurrency of a rerun, a bet index is stored at most once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from client.http import Api, ClientError, Rejected, Stopped
from client.lines import MalformedFile, bet_blocks

log = logging.getLogger("client")


@dataclass(frozen=True)
class FileScan:
    upload_id: str
    bets: int


@dataclass(frozen=True)
class Piece:
    """Bets ``[start, end)`` of the file as one LF-normalized body; ``numbers`` are their file lines."""

    start: int
    end: int
    body: bytes
    numbers: Sequence[int]


def scan(path: Path) -> FileScan:
    """Hash, count and shape-check the file in one streaming pass."""
    digest = hashlib.sha256()
    bets = 0
    try:
        for block in bet_blocks(path, digest):
            bets += len(block.lines)
    except MalformedFile as error:
        raise ClientError(str(error)) from None
    return FileScan("sha256-" + digest.hexdigest()[:40], bets)


def plan(path: Path, batch_size: int, committed: list[tuple[int, int]]) -> Iterator[Piece]:
    """Chunks of unsent bets, never crossing a stored range; streams the file."""
    stored = sorted(committed)
    r = 0  # first stored range that may still matter
    base = 0  # bet index of the current block's first line
    parts: list[bytes] = []  # the pending chunk's bodies, one per block it spans
    numbers: list[Sequence[int]] = []
    start = taken = 0

    def piece() -> Piece:
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        lines = numbers[0] if len(numbers) == 1 else [n for part in numbers for n in part]
        return Piece(start, start + taken, body, lines)

    try:
        for block in bet_blocks(path):
            count = len(block.lines)
            i = 0
            while i < count:
                bet = base + i
                while r < len(stored) and stored[r][1] <= bet:
                    r += 1
                if r < len(stored) and stored[r][0] <= bet:  # already stored: skip it, close the chunk
                    if taken:
                        yield piece()
                        parts, numbers, taken = [], [], 0
                    i = min(count, stored[r][1] - base)
                    continue
                free_until = count if r == len(stored) else min(count, stored[r][0] - base)
                take = min(free_until - i, batch_size - taken)
                if not taken:
                    start = bet
                parts.append(b"\n".join(block.lines[i : i + take]) + b"\n")
                numbers.append(block.numbers[i : i + take])
                taken += take
                i += take
                if taken == batch_size:
                    yield piece()
                    parts, numbers, taken = [], [], 0
            base += count
    except MalformedFile as error:
        raise ClientError(str(error)) from None
    if taken:
        yield piece()


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
        another_file: bool = False,
    ):
        self.api, self.agency, self.path = api, agency, path
        self.batch_size, self.concurrency = batch_size, concurrency
        self.forced_id = upload_id
        self.another_file = another_file
        self.progress = progress
        self.sent = 0
        self.upload_id: str | None = None
        self._lock = threading.Lock()

    def run(self) -> int:
        """Send what the server lacks; return how many bets the file has."""
        from client.resume import choose_upload

        scanned = scan(self.path)
        upload_id, spans = choose_upload(
            self.api,
            self.agency,
            self.path,
            self.forced_id or scanned.upload_id,
            forced=self.forced_id is not None,
            another_file=self.another_file,
        )
        self.upload_id = upload_id
        committed = [(s.start, s.end) for s in spans]
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
            response = self.api.request("POST", f"/agencies/{self.agency}/bets", content=piece.body, headers=headers)
        except Rejected as error:
            raise ClientError(explain_rejection(error, self.path, piece, upload_id)) from None
        stored = response.json()["stored"]
        with self._lock:
            self.sent += stored
            if self.progress:
                self.progress.advance(stored)


def explain_rejection(error: Rejected, path: Path, piece: Piece, upload_id: str) -> str:
    """The server's reason, with the file's own line numbers, and what to do (CONTRACT-uploads step 4)."""
    lines = f"{path}:{piece.numbers[0]}-{piece.numbers[-1]}"
    problems = error.problem.get("errors") or []
    if not problems:
        return f"chunk {lines} rejected: {error}"
    named = []
    for p in problems[:5]:
        index = p.get("index")
        where = (
            f"{path}:{piece.numbers[index]}" if isinstance(index, int) and 0 <= index < len(piece.numbers) else lines
        )
        named.append(f"{where}: {p.get('field')} {p.get('message')}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return (
        f"chunk {lines} rejected ({error.status}): "
        + "; ".join(named)
        + more
        + ". Nothing of that chunk was stored. Fix the bad line in place (keep the same lines in the same order: "
        f"do not delete or insert lines) and rerun with --upload-id {upload_id} to send only what is missing"
    )
