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

from client.http import ClientError, Rejected, Stopped
from client.lines import Block, MalformedFile, bet_blocks
from client.receipts import Receipts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

    from client.http import Server
    from client.lines import FilePath
    from client.progress import Progress

log = logging.getLogger("client")


# A file up to this size is read once: the blocks read to hash it are kept and sent from memory.
KEEP_IN_MEMORY = 64 << 20


class FileScan:
    __slots__ = ("upload_id", "bets", "blocks")

    def __init__(self, upload_id: str, bets: int, blocks: list[Block] | None = None):
        self.upload_id, self.bets = upload_id, bets
        self.blocks = blocks  # the file's bet lines, when small enough to keep

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileScan) and (self.upload_id, self.bets) == (other.upload_id, other.bets)


class Piece:
    """Bets ``[start, end)`` of the file as one LF-normalized body; ``numbers`` are their file lines."""

    __slots__ = ("start", "end", "body", "numbers")

    def __init__(self, start: int, end: int, body: bytes, numbers: Sequence[int]):
        self.start, self.end, self.body, self.numbers = start, end, body, numbers


def scan(path: FilePath) -> FileScan:
    """Hash, count and shape-check the file in one streaming pass (keeping it when small)."""
    digest = hashlib.sha256()
    bets = size = 0
    blocks: list[Block] | None = []
    try:
        for block in bet_blocks(path, digest):
            bets += block.count
            if blocks is not None:
                size += len(block.data)
                if size <= KEEP_IN_MEMORY:
                    blocks.append(block)
                else:
                    blocks = None
    except MalformedFile as error:
        raise ClientError(str(error)) from None
    return FileScan("sha256-" + digest.hexdigest()[:40], bets, blocks)


def plan(
    path: FilePath, batch_size: int, committed: list[tuple[int, int]], blocks: list[Block] | None = None
) -> Iterator[Piece]:
    """Chunks of unsent bets, never crossing a stored range; from ``blocks`` or streamed from the file."""
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
        for block in bet_blocks(path) if blocks is None else blocks:
            count = block.count
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
                parts.append(block.body(i, i + take))
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
        api: Server,
        agency: int,
        path: FilePath,
        batch_size: int,
        concurrency: int,
        upload_id: str | None = None,
        progress: Progress | None = None,
        another_file: bool = False,
        scanned: FileScan | None = None,  # the file's scan when the caller already made it (no second pass)
        closed: str | None = None,  # why no bet may be sent (a drawn round): raised if any is missing
        receipts: str | None = None,  # the receipts file (client/receipts.py); None: not kept
    ):
        self.api, self.agency, self.path = api, agency, path
        self.batch_size, self.concurrency = batch_size, concurrency
        self.forced_id = upload_id
        self.another_file = another_file
        self.progress = progress
        self.scanned = scanned
        self.closed = closed
        self.sent = 0
        self.upload_id: str | None = None
        self.receipts_path = receipts
        self.receipts: Receipts | None = None
        self.salt = ""  # this upload's Lottery-Salt (base64): the same for every chunk, and on a rerun
        self.round: int | None = getattr(api, "round", None)
        self._lock = threading.Lock()

    def run(self) -> int:
        """Send what the server lacks; return how many bets the file has."""
        from client.resume import choose_upload

        scanned = self.scanned or scan(self.path)
        upload_id, spans = choose_upload(
            self.api,
            self.agency,
            self.path,
            self.forced_id or scanned.upload_id,
            forced=self.forced_id is not None,
            another_file=self.another_file,
            blocks=scanned.blocks,
        )
        self.upload_id = upload_id
        committed = [(s.start, s.end) for s in spans]
        already = sum(e - s for s, e in committed)
        if self.closed and already < scanned.bets:  # before any chunk: each would only be refused
            raise ClientError(self.closed)
        log.info(
            "action: carga | result: in_progress | agencia: %d | upload_id: %s | apuestas: %d | ya_almacenadas: %d",
            self.agency,
            upload_id,
            scanned.bets,
            already,
        )
        if already < scanned.bets:
            self._choose_salt(upload_id)
        if self.progress:
            self.progress.start(scanned.bets, already)
        self._send_all(upload_id, committed, scanned.blocks)
        return scanned.bets

    def _send_all(self, upload_id: str, committed: list[tuple[int, int]], blocks: list[Block] | None) -> None:
        """``concurrency`` sender threads; at most that many chunks in flight plus the one being read."""
        import queue

        slots = threading.BoundedSemaphore(self.concurrency)
        work: queue.SimpleQueue[Piece | None] = queue.SimpleQueue()
        failures: list[BaseException] = []

        def sender() -> None:
            while (piece := work.get()) is not None:
                try:
                    if not failures:
                        self._send(upload_id, piece)
                except BaseException as error:  # handed to the main thread, which raises it
                    failures.append(error)
                finally:
                    slots.release()

        def take_slot() -> None:
            while not slots.acquire(timeout=0.2):
                if failures:
                    raise failures[0]
                if self.api.stop.is_set():
                    raise Stopped()
            if failures:
                raise failures[0]

        threads = [threading.Thread(target=sender, name=f"chunk-{i}", daemon=True) for i in range(self.concurrency)]
        for thread in threads:
            thread.start()
        try:
            for piece in plan(self.path, self.batch_size, committed, blocks):
                take_slot()
                work.put(piece)
            for _ in threads:  # every slot back: every chunk acknowledged
                take_slot()
        except BaseException:
            self.api.stop.set()  # let in-flight chunks give up their retries
            raise
        finally:
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join()

    def _choose_salt(self, upload_id: str) -> None:
        """The salt kept for this upload by an earlier run, or a new one (kept with the first chunk
        the log acknowledges: a server without the log leaves no receipts file behind)."""
        from tlog import b64, leaves  # only when bets are sent: a rerun with nothing to send skips it

        if self.receipts_path is not None:
            self.receipts = Receipts(self.receipts_path)
            kept = self.receipts.salt(self.round, self.agency, upload_id)
            if kept is not None:
                self.salt = kept
                return
        self.salt = b64.encode(leaves.new_salt())

    def _send(self, upload_id: str, piece: Piece) -> None:
        key = f"{upload_id}:{piece.start}-{piece.end}"
        headers = {
            "Content-Type": "text/csv",
            "Upload-Id": upload_id,
            "Upload-Offset": str(piece.start),
            "Idempotency-Key": key,
            "Lottery-Salt": self.salt,
        }
        try:
            response = self.api.request("POST", f"/agencies/{self.agency}/bets", content=piece.body, headers=headers)
        except Rejected as error:
            raise ClientError(explain_rejection(error, self.path, piece, upload_id)) from None
        answer = response.json()
        stored = answer["stored"]
        if self.receipts is not None and isinstance(answer.get("log"), dict):  # a server without the log: none
            self.receipts.append(chunk_receipt(self.round, self.agency, upload_id, piece, key, answer["log"]))
        with self._lock:
            self.sent += stored
            if self.progress:
                self.progress.advance(stored)


def chunk_receipt(
    round_id: int | None, agency: int, upload_id: str, piece: Piece, key: str, answer: dict[str, Any]
) -> dict[str, Any]:
    """The receipts file's line for an acknowledged chunk (client/receipts.py). What the server
    answered is kept as it came: ``verify`` judges it, against the log's key the agency trusts."""
    return {
        "kind": "chunk",
        "round": round_id,
        "agency": agency,
        "upload_id": upload_id,
        "start": piece.start,
        "end": piece.end,
        "lines": [piece.numbers[0], piece.numbers[-1]],
        "key": key,
        "salt": answer.get("salt"),
        "index": answer.get("index"),
        "size": answer.get("size"),
        "leaf": answer.get("leaf"),
        "checkpoint": answer.get("checkpoint"),
    }


def explain_rejection(error: Rejected, path: FilePath, piece: Piece, upload_id: str) -> str:
    """The server's reason, with the file's own line numbers, and what to do (CONTRACT-uploads step 4)."""
    lines = f"{path}:{piece.numbers[0]}-{piece.numbers[-1]}"
    problems = error.problem.get("errors") or []
    if error.status == 413:  # a body or a bet count over the server's limit for one chunk
        return (
            f"chunk {lines} rejected: {error}. The server takes smaller chunks: "
            f"rerun with a smaller --batch-size (this chunk had {piece.end - piece.start} bets)"
        )
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
