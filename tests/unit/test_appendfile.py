"""The appended files' kept descriptors (app/store/appendfile.py): one open per process, and
never a write into a file nobody reads: after a truncation, a file replaced at its path, a
removed file, a fork, a new round."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from app.domain import encode_rows
from app.store import Chunk
from app.store.appendfile import AppendFile
from app.store.files import FileStore


def _chunk(agency: int, tag: str) -> Chunk:
    rows = [(agency, "Ana", tag, "20000000", "1990-01-01", 7)]
    return Chunk.build(agency, encode_rows(rows), 1, f"k-{tag}")


def test_appends_through_one_descriptor_and_land_at_the_end_after_a_truncation(tmp_path: Path) -> None:
    path = tmp_path / "f"
    out = AppendFile(os.fspath(path))
    out.append(b"one\n", sync=True)
    fd = out._fd
    out.append(b"two\n", sync=False)
    assert out._fd == fd and path.read_bytes() == b"one\ntwo\n"
    os.truncate(path, 4)  # a crashed writer's tail cut by the store: no reopen needed
    out.append(b"three\n", sync=True)
    assert out._fd == fd and path.read_bytes() == b"one\nthree\n" and out.size() == 10
    out.close()


def test_a_file_replaced_or_removed_at_its_path_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "f"
    out = AppendFile(os.fspath(path))
    out.append(b"old\n", sync=False)
    (tmp_path / "g").write_bytes(b"restored\n")
    os.replace(tmp_path / "g", path)  # put back by hand: another inode at the path
    out.follow(os.stat(path))
    out.append(b"new\n", sync=False)
    assert path.read_bytes() == b"restored\nnew\n"
    path.unlink()
    out.follow(None)
    out.append(b"again\n", sync=False)
    assert path.read_bytes() == b"again\n"
    out.close()


def test_a_forked_child_appends_through_its_own_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "f"
    out = AppendFile(os.fspath(path))
    out.append(b"parent\n", sync=False)
    parent_fd = out._fd
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            out.append(b"child\n", sync=False)
            os._exit(0 if out._fd != parent_fd or os.fstat(parent_fd) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    out.append(b"parent again\n", sync=False)  # the parent's descriptor is still open
    assert out._fd == parent_fd and path.read_bytes() == b"parent\nchild\nparent again\n"
    out.close()


def test_the_store_follows_a_ledger_and_bets_replaced_by_hand(tmp_path: Path) -> None:
    """A worker keeps bets.csv and the ledger open; an operator restores both (same content, new
    files): the next commit lands in the files at the paths, not in the unlinked ones."""
    store = FileStore(tmp_path, 2, 7574, lock_timeout=10)
    store.append_chunk(_chunk(1, "a"))
    where = tmp_path / "rounds" / "0001"
    for name in ("bets.csv", "ledger.jsonl"):
        (where / f"{name}.copy").write_bytes((where / name).read_bytes())
        os.replace(where / f"{name}.copy", where / name)
    store.append_chunk(_chunk(1, "b"))
    assert [orjson.loads(line)["k"] for line in (where / "ledger.jsonl").read_bytes().splitlines()] == ["k-a", "k-b"]
    assert (where / "bets.csv").read_bytes().count(b"\n") == 2
    assert FileStore(tmp_path, 2, 7574).read_status(None).bets == 2
    store.close()


def test_a_new_round_appends_to_its_own_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path, 1, 7574, lock_timeout=10)
    store.append_chunk(_chunk(1, "a"))
    first = store._round(1)
    store.mark_done(1)  # the only agency: the round is drawn
    assert store.create_round(store.recorded(1)) == 2
    assert first._bets_out._fd is None and first._ledger_out._fd is None  # none left open for writing
    store.append_chunk(_chunk(1, "b"))
    for round_id, key in ((1, "k-a"), (2, "k-b")):
        ledger = (tmp_path / "rounds" / f"{round_id:04d}" / "ledger.jsonl").read_bytes().splitlines()
        assert [orjson.loads(line)["k"] for line in ledger] == [key]
    store.close()
