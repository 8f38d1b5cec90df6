"""The service's transparency log, whatever keeps it: leaves appended in the same commit as what
they record, one signed checkpoint per commit, proofs and entries for the /log routes.

One log for the whole service (docs/transparency.md). Each worker process keeps a
``merkle.Tree`` of the leaf hashes, brought up to date from storage with only the leaves it
has not read (O(new leaves), never O(log) per request).

Who may append: whoever holds the lock that orders the log's writers (files: the newest
round's lock, or the data dir's when a round opens). That caller knows from its own committed
records how many leaves are committed (``committed``): anything past it on disk is a crashed
writer's and is cut before appending. Leaves become committed with the caller's commit point
(a ledger line, a round's directory, winners.json); only then does :meth:`sign` sign their
size. Readers see only signed sizes, so they never see a leaf that may still be cut.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from app.store.base import DataCorrupt, LogReceipt, StorageUnavailable
from tlog import checkpoint, keyfile, merkle, note

log = logging.getLogger("lottery")

MAX_ENTRIES = 1000  # leaves in one answer of GET /log/entries


class LogReader(Protocol):
    """What the log's readers ask of where it is kept (files: app/store/files_log.py; PostgreSQL:
    app/store/pg_log.py)."""

    def read_leaves(self, start: int, end: int) -> list[bytes]: ...
    def read_checkpoints(self) -> tuple[int, bytes] | None: ...
    def checkpoint(self, size: int) -> bytes | None: ...
    def close(self) -> None: ...


class LogStorage(LogReader, Protocol):
    """What the files backend persists for the log, and its lock (app/store/files_log.py)."""

    def locked(self) -> AbstractContextManager[None]: ...
    def leaf_count(self) -> int: ...
    def append_leaves(self, leaves: list[bytes], *, durable: bool = True) -> None: ...
    def truncate_leaves(self, count: int) -> None: ...
    def append_checkpoint(self, size: int, note: bytes, *, durable: bool = True) -> None: ...
    def checkpoint_sizes(self) -> list[int]: ...
    def rewrite_checkpoints(self, checkpoints: dict[int, bytes]) -> None: ...
    def sync_checkpoints(self) -> None: ...


class LogRangeError(ValueError):
    """A size or index the log does not have (yet): the routes answer 400."""


class SignedLog:
    """The log as its readers see it (signed sizes only), this process's tree, and its key:
    what every backend shares. The writers are the backend's kind's (below)."""

    storage: LogReader

    def __init__(self, storage: LogReader, signer: note.Signer, origin: str):
        self.storage = storage
        self.signer = signer
        self.origin = origin
        self._tree = merkle.Tree()
        # Threads of one process: the tree (and, for files, the storage's per-process file lock).
        self._guard = threading.Lock()

    @property
    def vkey(self) -> str:
        return self.signer.verifier().vkey()

    def _signed(self, size: int) -> bytes:
        """Under the guard: the signed note of the first ``size`` leaves."""
        self._catch_up(size)
        return checkpoint.sign_checkpoint(checkpoint.Checkpoint(self.origin, size, self._tree.root(size)), self.signer)

    def _catch_up(self, size: int) -> None:
        """Under the guard: the tree holds at least the first ``size`` leaves (committed ones)."""
        have = len(self._tree)
        while have < size:
            end = min(size, have + 4096)  # a bounded read at a time: flat memory on a first read
            for leaf in self.storage.read_leaves(have, end):
                self._tree.append(merkle.leaf_hash(leaf))
            have = end

    def root(self, size: int) -> bytes:
        """The root of the first ``size`` leaves, from this process's tree (a writer's own leaves
        included): for the draw, which derives its number from the root with its close leaf in."""
        with self._guard:
            self._catch_up(size)
            return self._tree.root(size)

    # -- readers (signed sizes only) --------------------------------------------------------

    def latest(self) -> tuple[int, bytes] | None:
        """The latest signed checkpoint: (size, note)."""
        return self.storage.read_checkpoints()

    def size(self) -> int:
        latest = self.latest()
        return 0 if latest is None else latest[0]

    def checkpoint(self, size: int | None = None) -> bytes | None:
        if size is None:
            latest = self.latest()
            return None if latest is None else latest[1]
        return self.storage.checkpoint(size)

    def _within(self, size: int, what: str = "size") -> int:
        current = self.size()
        if not 0 <= size <= current:
            raise LogRangeError(f"{what} {size} is beyond the log's size {current}")
        return current

    def entries(self, start: int, end: int) -> list[bytes]:
        """Leaves ``[start, end)``, at most MAX_ENTRIES: a shorter page means ask again from where it ended."""
        if not 0 <= start < end:
            raise LogRangeError(f"entries [{start}, {end}): start must be below end, from 0")
        self._within(end, "end")
        return self.storage.read_leaves(start, min(end, start + MAX_ENTRIES))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._within(size)
        if not 0 <= index < size:
            raise LogRangeError(f"leaf {index} is not in the tree of {size}")
        with self._guard:
            self._catch_up(size)
            return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old: int, size: int) -> list[bytes]:
        self._within(size)
        if not 0 <= old <= size:
            raise LogRangeError(f"old size {old} is not within 0 to {size}")
        with self._guard:
            self._catch_up(size)
            return self._tree.consistency_proof(old, size)

    def receipt(
        self, index: int, salt: str, leaf: bytes | None = None, latest: tuple[int, bytes] | None = None
    ) -> LogReceipt:
        """A committed chunk's receipt: its leaf (read, unless the caller has it), and the latest
        checkpoint (it holds the leaf: the chunk's commit signed one, and recovery signs what a
        crash left unsigned); ``latest``: that checkpoint as the caller read it after the commit
        (a batch's chunks share one read)."""
        latest = latest or self.latest()
        if latest is None or latest[0] <= index:
            raise StorageUnavailable(f"no signed checkpoint holds leaf {index} yet; retry shortly")
        found = leaf if leaf is not None else self.storage.read_leaves(index, index + 1)[0]
        return LogReceipt(index, latest[0], found, salt, latest[1])


class TransactionalLog(SignedLog):
    """The writers of a backend whose leaves commit in one transaction with what they record
    (PostgreSQL: app/store/pg_log.py): no leaf is ever cut, so this process's tree holds only
    committed leaves. A writer, holding the lock that orders the log's writers, feeds the tree
    the leaves committed since it last read (:meth:`feed`), has the batch's checkpoint signed
    (:meth:`sign_next`) and inserts it with the leaves before its commit; after the commit,
    :meth:`feed` again with its own leaves spares reading them back."""

    def known(self) -> int:
        """How many leaves this process's tree holds: a writer reads the committed ones past it."""
        with self._guard:
            return len(self._tree)

    def feed(self, start: int, found: Sequence[bytes]) -> None:
        """Committed leaves ``start``, ``start + 1``, ... that the caller read: the tree takes those
        that extend it (another thread may have read some meanwhile; a gap is left to a later read)."""
        with self._guard:
            have = len(self._tree)
            if start <= have:
                for leaf in found[have - start :]:
                    self._tree.append(merkle.leaf_hash(leaf))

    def sign_next(self, size: int, found: Sequence[bytes]) -> tuple[bytes, bytes]:
        """Under the writers' lock, before the commit: the log holds ``size`` committed leaves,
        ``found`` to be appended after them. The signed checkpoint of ``size + len(found)`` and its
        root. The tree is left at ``size``: those leaves are not committed until the caller commits."""
        with self._guard:
            if len(self._tree) > size:  # the database holds fewer than we read (restored?): read it again
                self._tree = merkle.Tree()
            self._catch_up(size)
            for leaf in found:
                self._tree.append(merkle.leaf_hash(leaf))
            try:
                head = checkpoint.Checkpoint(self.origin, len(self._tree), self._tree.root())
                return head.root, checkpoint.sign_checkpoint(head, self.signer)
            finally:
                self._tree.truncate(size)


class TransparencyLog(SignedLog):
    """The files backend's writers: leaves appended before the commit point that makes them
    committed (cut after a crash before it), checkpoints signed after it."""

    storage: LogStorage

    def __init__(self, storage: LogStorage, signer: note.Signer, origin: str):
        super().__init__(storage, signer, origin)

    # -- writers --------------------------------------------------------------------------

    def append(self, leaves: Sequence[bytes], committed: int, *, durable: bool = True) -> int:
        """The leaves appended after the ``committed`` first ones; the first one's index.
        ``durable``: on disk before this returns (a round's opening and close); a chunk's leaf
        need not be, its ledger line and bets rebuild it (docs/transparency.md, "Recovery").
        Leaves on disk past ``committed`` are a crashed writer's: cut first."""
        with self._guard, self.storage.locked():
            self._cut_to(committed)
            self._catch_up(committed)
            self.storage.append_leaves(list(leaves), durable=durable)
            for leaf in leaves:
                self._tree.append(merkle.leaf_hash(leaf))
            return committed

    def undo(self, committed: int) -> None:
        """After a commit that failed: its leaves go (best effort; the next append cuts them anyway)."""
        with self._guard:
            if len(self._tree) > committed:
                self._tree = merkle.Tree()  # rebuilt from the committed leaves when next asked
            try:
                with self.storage.locked():
                    if self.storage.leaf_count() > committed:
                        self.storage.truncate_leaves(committed)
            except (OSError, StorageUnavailable):
                pass

    def sign(self, size: int, *, durable: bool = True) -> None:
        """After the commit point of the leaves below ``size``: a checkpoint of ``size``, unless one
        of that size or larger exists (then it already covers them). Never two for one size, and
        every signed size is a prefix of the same committed leaves: no two inconsistent checkpoints.
        ``durable``: on disk before this returns; a chunk batch's need not be, its ledger records
        the size and recovery signs it again, the same bytes (Ed25519 is deterministic)."""
        with self._guard, self.storage.locked():
            latest = self.storage.read_checkpoints()
            if latest is not None and latest[0] >= size:
                return
            self.storage.append_checkpoint(size, self._signed(size), durable=durable)

    def recover(self, committed: int, named: Sequence[int] = ()) -> list[int]:
        """At start: leaves past the ``committed`` ones cut; every size in ``named`` (sizes the
        files record as signed: a receipt may hold them) and ``committed`` itself signed again
        where a crash lost its checkpoint, byte for byte as before. The sizes signed again."""
        with self._guard, self.storage.locked():
            self._cut_to(committed)
            have = set(self.storage.checkpoint_sizes())
            missing = sorted({size for size in (*named, committed) if 0 < size <= committed} - have)
            if missing and have and missing[0] < max(have):  # a line lost before others: the file anew
                kept = {size: self.storage.checkpoint(size) or b"" for size in have}
                self.storage.rewrite_checkpoints(kept | {size: self._signed(size) for size in missing})
            else:
                for size in missing:
                    self.storage.append_checkpoint(size, self._signed(size), durable=False)
            if missing:
                self.storage.sync_checkpoints()
            return missing

    def _cut_to(self, committed: int) -> None:
        on_disk = self.storage.leaf_count()
        if on_disk < committed:
            raise DataCorrupt(
                f"the transparency log holds {on_disk} leaves but {committed} are committed: leaves were removed"
            )
        if on_disk > committed:
            self.storage.truncate_leaves(committed)
            log.warning("action: reparacion_log | result: success | hojas_descartadas: %d", on_disk - committed)
        if len(self._tree) > committed:
            self._tree = merkle.Tree()


class LogKeyError(ValueError):
    """The log's key file cannot sign for this origin."""


def load_signer(path: Path, origin: str, *, create: bool) -> note.Signer:
    """The log's signer from its key file; ``create``: a new key there if there is none (mode 0600,
    named ``origin``; its verifier key logged). LogKeyError when the file cannot be used."""
    if create and not path.exists():
        with contextlib.suppress(FileExistsError):  # another worker made it first: read it
            made = keyfile.write_new_key(path, origin)
            log.info(
                "action: clave_log_creada | result: success | archivo: %s | vkey: %s", path, made.verifier().vkey()
            )
    try:
        signer = keyfile.load_signer(path)
    except keyfile.KeyFileError as error:
        raise LogKeyError(str(error)) from None
    if signer.name != origin:
        raise LogKeyError(
            f"the log key {path} is named {signer.name!r} but LOTTERY_LOG_ORIGIN is {origin!r}: "
            "a key signs for one origin"
        )
    return signer
