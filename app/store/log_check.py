"""The start-up check of the files backend's transparency log (gunicorn's master, app/preflight.py).

The server refuses to start, naming what differs, when the log on disk does not match what was
signed or what the current round's files record:

1. every checkpoint is signed by the log's key for its origin, and its root is the root of the
   leaves on disk at its size (a cut, removed or altered leaf changes it);
2. the newest round's files (round.json's opening, the ledger's "i", winners.json's close)
   commit exactly the leaves on disk up to their last index: fewer leaves on disk, or a
   checkpoint past them, means leaves or ledger lines were removed;
3. each chunk of the current round is its leaf: same round, agency, key and count, and the
   digest recomputed from its bets in bets.csv with its kept salt; its leaves are consecutive
   (a ledger line removed leaves a gap).

Costs: reading every leaf once (hashing the tree: about 1.6 s a million leaves), and the current
round's bets once (O(its bets)). Then it recovers what a crash left (docs/transparency.md,
"Recovery"): a checkpoint line torn by a power cut is cut; a chunk leaf of the current round a
power cut lost (its slot missing or holding no leaf) is rebuilt from its ledger line and its
bets, before the checkpoints are checked against the leaves; leaves past the committed ones
are cut; every size the round's ledger records as a batch's checkpoint ("c"), and the committed
size, is signed again where its checkpoint was lost: the same bytes, Ed25519 being deterministic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.store import files
from app.store.base import DataCorrupt
from app.store.files_log import FileLogStorage
from app.store.txlog import TransparencyLog
from tlog import b64, checkpoint, leaves, merkle, note

log = logging.getLogger("lottery")


class LogMismatch(Exception):
    """The log on disk is not what was signed or committed: the server must not start."""


class LedgerUnreadable(Exception):
    """The current round's ledger has a line that is no record: what it commits cannot be told, so
    nothing is checked or repaired; the store answers 503 naming the line until it is repaired."""


def check_files_log(data_dir: Path, signer: note.Signer, origin: str) -> int:
    """Check the log and the current round against it, then recover; the log's size.
    LogMismatch naming what differs."""
    directory = Path(data_dir) / files.LOG_DIR
    if not directory.is_dir():
        return 0  # no log yet: the first worker makes it
    storage = FileLogStorage(directory)
    try:
        return _check(storage, Path(data_dir), signer, origin)
    except DataCorrupt as error:
        raise LogMismatch(str(error)) from None
    finally:
        storage.close()


def _check(storage: FileLogStorage, data_dir: Path, signer: note.Signer, origin: str) -> int:
    if storage.cut_torn_checkpoint():
        log.warning("action: reparacion_log | result: success | detail: a torn checkpoint line cut")
    slots = storage.read_slots(0, storage.leaf_count())
    # The leaves on disk: up to the first slot that holds none (a power cut's zeros, a partial slot).
    count = next((at for at, slot in enumerate(slots) if slot is None), len(slots))
    leaf_bytes: list[bytes] = [slot for slot in slots[:count] if slot is not None]
    tree = merkle.Tree()
    for leaf in leaf_bytes:
        tree.append(merkle.leaf_hash(leaf))
    verifier = signer.verifier()
    heads = [_opened(storage, size, verifier, origin) for size in storage.checkpoint_sizes()]
    # What the leaves on disk can tell first (an altered leaf), then the round's chunks against
    # their leaves (a lost one rebuilt), then the checkpoints past the leaves that were on disk.
    on_disk = [head for head in heads if head.size <= count]
    _match(on_disk, tree, count, 0)
    committed, round_id, named, rebuilt = _committed(data_dir, leaf_bytes)
    if rebuilt:
        storage.write_slots(rebuilt)
        for index in sorted(rebuilt):
            tree.append(merkle.leaf_hash(rebuilt[index]))
        log.warning("action: reparacion_log | result: success | hojas_reconstruidas: %d", len(rebuilt))
    _match(heads[len(on_disk) :], tree, len(leaf_bytes), on_disk[-1].size if on_disk else 0)
    count = len(leaf_bytes)
    signed_size = heads[-1].size if heads else 0
    if committed > count:
        raise LogMismatch(
            f"round {round_id}'s files commit {committed} leaves but the log holds {count}: leaves were removed"
        )
    if signed_size > committed:
        raise LogMismatch(
            f"the log signed {signed_size} leaves but round {round_id}'s files commit only {committed}: "
            f"the records of leaves {committed} to {signed_size - 1} were removed (a chunk's ledger line?)"
        )
    signed_again = TransparencyLog(storage, signer, origin).recover(committed, named)
    if signed_again:
        log.warning("action: reparacion_log | result: success | checkpoints_firmados: %d", len(signed_again))
    return committed


def _opened(storage: FileLogStorage, size: int, verifier: note.Verifier, origin: str) -> checkpoint.Checkpoint:
    try:
        head = checkpoint.open_checkpoint(storage.checkpoint(size) or b"", verifier, origin)
    except (note.NoteError, checkpoint.CheckpointError) as error:
        raise LogMismatch(f"the log's checkpoint of size {size} does not verify with the log's key: {error}") from None
    if head.size != size:
        raise LogMismatch(f"the checkpoint filed under size {size} signs size {head.size}")
    return head


def _match(heads: list[checkpoint.Checkpoint], tree: merkle.Tree, count: int, previous: int) -> None:
    """Each checkpoint's root is the root of the first ``count`` leaves at its size."""
    for head in heads:
        if head.size > count:
            raise LogMismatch(
                f"the log's checkpoint of size {head.size} signs leaves the log no longer has: it holds {count} "
                "(leaves were removed)"
            )
        if tree.root(head.size) != head.root:
            raise LogMismatch(
                f"the leaves on disk do not match the log's signed checkpoint of size {head.size}: "
                f"a leaf among {previous} to {head.size - 1} was altered"
            )
        previous = head.size


def _committed(data_dir: Path, on_disk: list[bytes]) -> tuple[int, int, list[int], dict[int, bytes]]:
    """How many leaves the newest round's files commit, that round, the sizes its ledger records
    as signed, and the chunk leaves rebuilt (added to ``on_disk`` too); each of its chunks
    checked against its leaf."""
    ids = files.round_ids(data_dir)
    if not ids:
        return 0, 0, [], {}
    round_id = ids[-1]
    where = files.round_dir(data_dir, round_id)
    recorded = files.read_json(where / files.ROUND, lambda _: None) or {}
    result = files.read_json(where / files.WINNERS, lambda _: None) or {}
    opened = recorded.get("log_opened")
    closed = (result.get("log") or {}).get("closed")
    named: list[int] = []
    rebuilt: dict[int, bytes] = {}
    last = _check_chunks(where, round_id, opened, on_disk, named, rebuilt)
    ends = [at + 1 for at in (opened, last, closed) if type(at) is int]
    return max(ends, default=0), round_id, named, rebuilt


def _check_chunks(
    where: Path, round_id: int, opened: int | None, on_disk: list[bytes], named: list[int], rebuilt: dict[int, bytes]
) -> int | None:
    """Every committed ledger line of the round against its leaf and its bets: the last leaf index.
    A leaf missing at the end of ``on_disk`` is rebuilt from its line (into ``rebuilt``); each
    batch's signed size goes to ``named``."""
    try:
        ledger = (where / files.LEDGER).read_bytes()
    except FileNotFoundError:
        return None
    ledger = ledger[: ledger.rfind(b"\n") + 1]  # a torn last line is no commit (the worker cuts it)
    expected = None if opened is None else opened + 1
    start, last = 0, None
    with open(where / files.BETS, "rb") if (where / files.BETS).exists() else _Empty() as bets:
        for number, line in enumerate(ledger.splitlines(), 1):
            try:
                record = files.ledger_record(line, start)
            except ValueError as error:
                raise LedgerUnreadable(
                    f"{where / files.LEDGER}: line {number} is not a ledger record ({error})"
                ) from None
            rows = bets.read(record["end"] - start)
            if len(rows) != record["end"] - start:
                raise LogMismatch(f"{where / files.BETS} is shorter than its ledger says: bets were removed")
            index = record.get("i")
            if index is not None:
                if expected is not None and index != expected:
                    raise LogMismatch(
                        f"round {round_id}'s ledger line {number} holds leaf {index} where leaf {expected} was next: "
                        f"the chunk of leaf {expected} was removed from the ledger"
                    )
                if index == len(on_disk) and _key(record) is not None:  # lost by a power cut: made again
                    rebuilt[index] = _chunk_leaf(record, rows, round_id)
                    on_disk.append(rebuilt[index])
                _check_chunk(record, rows, round_id, on_disk, number)
                expected, last = index + 1, index
                if record.get("c") is not None:
                    named.append(record["c"])
            start = record["end"]
    return last


def _key(record: dict[str, Any]) -> str | None:
    """The chunk's leaf key: its Idempotency-Key, or the one drawn for it ("ak"; None in a ledger
    written before it was recorded)."""
    key = record.get("k")
    return key if key is not None else record.get("ak")


def _chunk_leaf(record: dict[str, Any], rows: bytes, round_id: int) -> bytes:
    key = _key(record)
    assert key is not None
    try:
        digest = leaves.chunk_digest(b64.decode(record["s"]), rows)
        return leaves.ChunkStored(round_id, record["a"], key, record["n"], digest).bytes()
    except ValueError as error:
        raise LogMismatch(f"round {round_id}'s chunk {key} (leaf {record['i']}) cannot be rebuilt: {error}") from None


def _check_chunk(record: dict[str, Any], rows: bytes, round_id: int, on_disk: list[bytes], number: int) -> None:
    index = record["i"]
    what = f"round {round_id}, agency {record['a']}, chunk {record.get('k') or '(no key)'} (leaf {index})"
    if index >= len(on_disk):
        raise LogMismatch(f"{what}: the log has no leaf {index} (it holds {len(on_disk)}): leaves were removed")
    try:
        leaf = leaves.parse_leaf(on_disk[index])
        digest = leaves.chunk_digest(b64.decode(record["s"]), rows)
    except ValueError as error:
        raise LogMismatch(f"{what}: {error}") from None
    key = _key(record)
    key_matches = isinstance(leaf, leaves.ChunkStored) and (
        leaf.key == key if key is not None else leaf.key.startswith("auto-")
    )
    if not (
        isinstance(leaf, leaves.ChunkStored)
        and key_matches
        and (leaf.round, leaf.agency, leaf.bets) == (round_id, record["a"], record["n"])
    ):
        raise LogMismatch(f"{what}: ledger line {number} is not the chunk its leaf records")
    if leaf.digest != digest:
        raise LogMismatch(f"{what}: its bets in bets.csv differ from its leaf's digest (a bet was altered or removed)")


class _Empty:
    def __enter__(self) -> _Empty:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, size: int) -> bytes:  # noqa: ARG002 - a bets.csv that does not exist holds nothing
        return b""
