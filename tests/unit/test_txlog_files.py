"""The transparency log of the files backend, in process: random batches of chunks from several
threads and two store instances (two "workers" on one data dir), every receipt checked; a
failed commit leaves no leaf; PostgreSQL keeps it in the chunk's transaction."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import encode_rows
from app.main import create_app
from app.settings import Settings
from app.store import Chunk, StorageUnavailable
from app.store.appendfile import AppendFile
from app.store.files import FileStore
from tests.postgres_db import fresh_database
from tlog import b64, checkpoint, leaves, merkle, note

ORIGIN = "lottery.local/log"


def _chunk(agency: int, count: int, tag: str, keyed: bool) -> Chunk:
    rows = [(agency, "Ana", tag, str(20_000_000 + i), "1990-01-01", i) for i in range(count)]
    return Chunk.build(agency, encode_rows(rows), count, f"k-{tag}" if keyed else None, salt=leaves.new_salt())


def _verify(store: FileStore, chunk: Chunk, receipt, verifier: note.Verifier) -> int:
    log = receipt.log
    head = checkpoint.open_checkpoint(log.checkpoint, verifier, ORIGIN)
    leaf = leaves.parse_leaf(log.leaf)
    assert isinstance(leaf, leaves.ChunkStored) and leaf.digest == leaves.chunk_digest(
        b64.decode(log.salt), chunk.payload
    )
    assert head.size == log.size > log.index
    assert store.log is not None
    proof = store.log.inclusion_proof(log.index, head.size)
    merkle.verify_inclusion(log.index, head.size, merkle.leaf_hash(log.leaf), proof, head.root)
    return head.size


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4), st.booleans()), min_size=1, max_size=6),
        min_size=1,
        max_size=4,
    )
)
def test_random_batches_from_two_workers_every_receipt_verifies(batches) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workers = [FileStore(Path(tmp), 3, 7574, lock_timeout=10) for _ in range(2)]
        assert workers[0].log is not None
        verifier = workers[0].log.signer.verifier()
        done: list[tuple[FileStore, Chunk, object]] = []
        guard = threading.Lock()
        for b, batch in enumerate(batches):

            def send(i: int, item: tuple[int, int, bool], b: int = b) -> None:
                store = workers[i % 2]
                chunk = _chunk(item[0], item[1], f"{b}-{i}", item[2])
                receipt = store.append_chunk(chunk)
                with guard:
                    done.append((store, chunk, receipt))

            threads = [threading.Thread(target=send, args=(i, item)) for i, item in enumerate(batch)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        sizes = {_verify(store, chunk, receipt, verifier) for store, chunk, receipt in done}
        assert sorted(r.log.index for _, _, r in done) == list(range(1, len(done) + 1))  # type: ignore[attr-defined]
        log = workers[1].log
        assert log is not None and log.size() == len(done) + 1
        latest = checkpoint.open_checkpoint(log.checkpoint() or b"", verifier, ORIGIN)
        for size in sizes:
            old = checkpoint.open_checkpoint(log.checkpoint(size) or b"", verifier, ORIGIN)
            merkle.verify_consistency(
                size, latest.size, old.root, latest.root, log.consistency_proof(size, latest.size)
            )
        for store in workers:
            store.close()


def test_a_commit_whose_ledger_write_fails_leaves_no_leaf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path, 2, 7574, lock_timeout=10)
    assert store.log is not None
    store.append_chunk(_chunk(1, 2, "a", True))
    original = AppendFile.append

    def failing(self: AppendFile, data: bytes, *, sync: bool) -> None:
        if self.path.endswith("ledger.jsonl"):
            raise OSError(28, "No space left on device")
        original(self, data, sync=sync)

    monkeypatch.setattr(AppendFile, "append", failing)
    with pytest.raises(StorageUnavailable):
        store.append_chunk(_chunk(1, 2, "b", True))
    monkeypatch.setattr(AppendFile, "append", original)
    assert store.log.storage.leaf_count() == 2 and store.log.size() == 2
    receipt = store.append_chunk(_chunk(1, 2, "c", True))
    assert receipt.log is not None and receipt.log.index == 2


def test_postgres_keeps_the_log_in_the_chunks_transaction(tmp_path) -> None:
    """In process (TestClient): PostgreSQL's receipt carries the chunk's leaf after round 1's
    opening, signed at the size its commit made; the routes serve it; the key was made in the data dir."""
    with fresh_database() as url:
        settings = Settings(database_url=url, agencies=2, data_dir=tmp_path / "data")
        with TestClient(create_app(settings)) as client:
            answer = client.post(
                "/agencies/1/bets", content=b"Ana,Paz,1,1990-01-01,1\n", headers={"content-type": "text/csv"}
            )
            assert answer.status_code == 201, answer.text
            assert (answer.json()["log"]["index"], answer.json()["log"]["size"]) == (1, 2)
            for route in (
                "/log/vkey",
                "/log/checkpoint",
                "/log/entries?start=0&end=1",
                "/log/proof/inclusion?index=0&size=1",
            ):
                assert client.get(route).status_code == 200, route
            shown = client.get("/rounds/1").json()
            assert (shown["log"], shown["seed_commitment"], shown["draw"]) == (
                {"opened": 0, "closed": None},
                None,
                None,
            )
        assert (tmp_path / "data" / "log.key").stat().st_mode & 0o777 == 0o600


def test_a_reader_thread_never_takes_a_checkpoint_its_process_wrote_meanwhile_for_a_removed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the one-bet worker-kill test under load (2 of 6 runs): a thread read the
    # checkpoints file's size, another thread of the same process appended a checkpoint (its
    # read position past that size), and the first then saw "shorter than it was: a checkpoint
    # was removed" (DataCorrupt, 503). The size must be read where the position is.
    from app.store import files_log

    storage = files_log.FileLogStorage(tmp_path / "log")
    storage.append_checkpoint(1, b"lottery.local/log\n1\nAAAA\n\n")
    real_size = files_log._size
    size_read, go = threading.Event(), threading.Event()
    outcome: list[object] = []

    def paused_size(path: str) -> int:
        size = real_size(path)
        if threading.current_thread().name == "reader" and not size_read.is_set():
            size_read.set()
            assert go.wait(10)
        return size

    monkeypatch.setattr(files_log, "_size", paused_size)

    def read() -> None:
        try:
            outcome.append(storage.read_checkpoints())
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcome.append(error)

    reader = threading.Thread(target=read, name="reader")
    reader.start()
    assert size_read.wait(10)
    writer = threading.Thread(target=storage.append_checkpoint, args=(2, b"lottery.local/log\n2\nBBBB\n\n"))
    writer.start()
    if not storage._read_guard.locked():  # the size was read outside the guard: the writer goes first
        writer.join(10)
    go.set()
    reader.join(10)
    writer.join(10)
    assert [type(o).__name__ for o in outcome] == ["tuple"], outcome
    assert storage.read_checkpoints() == (2, b"lottery.local/log\n2\nBBBB\n\n")
    storage.close()
