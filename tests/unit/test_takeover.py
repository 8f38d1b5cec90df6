"""A data dir of the one-round release becomes round 1, byte for byte, atomically (issue 11).

The take-over is simulated to crash after each of its steps: every crash leaves either the old
layout or the new one, and the next start finishes it with every byte kept.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import orjson
import pytest

from app.store import RoundStatus
from app.store import files as files_module
from app.store.files import LEGACY, FileStore, RoundFiles
from tests.helpers import WIN, chunk
from tests.unit.test_store_files import OneRound


class Crash(BaseException):
    """A kill: nothing after it runs (not an Exception, so no handler of the store catches it)."""


def legacy_dir(path: Path, drawn: bool) -> dict[str, bytes]:
    """What the one-round release leaves: its files at the top of the data dir."""
    old = OneRound(RoundFiles(path, 2, WIN, lock_timeout=10))
    old.append_chunk(chunk(1, 5, winners={1, 4}, key="k1"))
    old.append_chunk(chunk(2, 3, upload=("file-2", 0)))
    old.mark_done(1)
    if drawn:
        old.mark_done(2)
    # That release kept its done agencies in done.json (today's store appends them to done.log).
    done = sorted(int(line) for line in (path / "done.log").read_bytes().split())
    (path / "done.json").write_bytes(orjson.dumps({"agencies": done}))
    (path / "done.log").unlink()
    return {name: (path / name).read_bytes() for name in LEGACY if (path / name).exists()}


def steps(path: Path, monkeypatch) -> list[str]:
    """The names of the take-over's steps, from a run that does not crash."""
    seen: list[str] = []
    monkeypatch.setattr(files_module, "_step", seen.append)
    FileStore(path, 5, 1234, lock_timeout=10)
    monkeypatch.undo()
    return seen


def layout(path: Path, before: dict[str, bytes]) -> str:
    """'old' or 'new', asserting that one of them holds every file with its bytes."""
    first = path / "rounds" / "0001"
    if (path / "rounds").exists():
        assert {name: (first / name).read_bytes() for name in before} == before
        return "new"
    assert {name: (path / name).read_bytes() for name in before} == before
    return "old"


@pytest.mark.parametrize("drawn", [False, True])
def test_every_crash_of_the_take_over_leaves_the_old_or_the_new_layout(tmp_path, monkeypatch, drawn) -> None:
    template = tmp_path / "template"
    before = legacy_dir(template, drawn)
    assert set(before) == (
        {"bets.csv", "ledger.jsonl", "done.json", "round.json"} | ({"winners.json"} if drawn else set())
    )
    names = steps(shutil.copytree(template, tmp_path / "probe"), monkeypatch)
    assert names[-1].startswith("unlinked") and "renamed" in names
    seen_layouts = set()
    for crash_at in range(len(names)):
        data = shutil.copytree(template, tmp_path / f"crash-{crash_at}")
        calls = iter(range(len(names)))

        def step(name: str, at: int = crash_at, calls=calls) -> None:
            if next(calls) == at:
                raise Crash(name)

        monkeypatch.setattr(files_module, "_step", step)
        with pytest.raises(Crash):
            FileStore(data, 5, 1234, lock_timeout=10)
        monkeypatch.undo()
        seen_layouts.add(layout(data, before))

        # the next start finishes the take-over: round 1 as it was, nothing left at the top
        store = FileStore(data, 5, 1234, lock_timeout=10)
        assert layout(data, before) == "new"
        assert [name for name in LEGACY if (data / name).exists()] == []
        assert not (data / files_module.STAGING).exists()
        assert store.current_round() == 1 and (store.agencies, store.winning_number) == (2, WIN)
        assert store.status(draw=False) == RoundStatus(2, 2 if drawn else 1, drawn, 8, 1)
        assert store.winners(1) == (["1000001", "1000004"] if drawn else None)
        assert store.append_chunk(chunk(1, 5, winners={1, 4}, key="k1")).replayed  # its keys kept
    assert seen_layouts == {"old", "new"}


def test_workers_starting_at_once_take_over_once(tmp_path, caplog, monkeypatch) -> None:
    data = tmp_path / "data"
    before = legacy_dir(data, drawn=True)
    barrier = threading.Barrier(6)
    stores: list[FileStore] = []
    logger = logging.getLogger("lottery")
    monkeypatch.setattr(logger, "propagate", False)  # the records reach caplog's handler once
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:

        def start() -> None:
            barrier.wait()
            stores.append(FileStore(data, 3, 1, lock_timeout=10))

        threads = [threading.Thread(target=start) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
    assert len(stores) == 6 and all(s.status(draw=False).drawn for s in stores)
    assert layout(data, before) == "new"
    assert caplog.text.count("action: toma_de_datos | result: success") == 1
    # the round is over: the operator opens round 2 with the settings of now
    opened = stores[0].open_round()
    assert (opened.round, opened.agencies, opened.winning_number) == (2, 3, 1)
    assert {name: (data / "rounds" / "0001" / name).read_bytes() for name in before} == before


def test_a_fresh_data_dir_starts_round_1_with_the_settings(tmp_path) -> None:
    store = FileStore(tmp_path / "data", 4, 99, lock_timeout=10)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".lock", "log", "log.key", "rounds"]
    assert sorted(p.name for p in (tmp_path / "data" / "rounds").iterdir()) == ["0001"]
    info = store.round_info()
    assert (info.round, info.agencies, info.winning_number, info.state) == (1, 4, 99, "open")


def test_a_file_at_the_top_that_is_not_round_1s_is_left_alone(tmp_path, caplog) -> None:
    data = tmp_path / "data"
    FileStore(data, 2, WIN, lock_timeout=10).append_chunk(chunk(1, 2))
    (data / "bets.csv").write_bytes(b"someone's file\n")
    FileStore(data, 2, WIN, lock_timeout=10)
    assert (data / "bets.csv").read_bytes() == b"someone's file\n"
