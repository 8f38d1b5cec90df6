"""The file backend (app/store/files.py) on a temporary dir: commits, replays, the draw, recovery."""

from __future__ import annotations

import errno
import logging
import random
import re
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import app.store.files as files
from app.domain import Row, encode_rows, has_won, load_bets
from app.rounds import RoundParameters
from app.store import (
    AgencyClosed,
    Chunk,
    ChunkReceipt,
    DoneReceipt,
    IdempotencyMismatch,
    RangeConflict,
    RoundStatus,
    StorageUnavailable,
    UploadSpan,
    UploadState,
    flow,
)
from app.store.appendfile import AppendFile
from app.store.base import SpanIndex, merge_ranges, replay_by_range
from app.store.files import FileStore, RoundFiles, scan_winners
from tests.helpers import WIN, chunk, make_rows


class OneRound(flow.RoundFlow):
    """One RoundFiles as a store: the round's flow (app/store/flow.py) over that directory alone,
    and everything else the RoundFiles has."""

    def __init__(self, files: RoundFiles):
        self.files = files
        self.settings = RoundParameters(files.agencies, files.winning_number)

    def __getattr__(self, name: str):
        return getattr(self.files, name)

    def locked_round(self, round, *, writing):  # noqa: ARG002 - one round
        return self.files.txn()

    def published(self, round, agency):  # noqa: ARG002 - one round
        return self.files.published(agency)

    def read_status(self, round):  # noqa: ARG002 - one round
        return self.files.read_status()

    def create_round(self, params):
        raise NotImplementedError

    def recorded(self, round):  # noqa: ARG002 - one round
        return RoundParameters(self.files.agencies, self.files.winning_number)

    def append_chunk(self, chunk, round=None):  # noqa: ARG002 - one round
        return self.files.append_chunk(chunk)

    def check_health(self):
        self.files.check_health()

    def current_round(self):
        return self.files.round_id

    def round_info(self, round=None):  # noqa: ARG002 - one round
        return self.files.info()

    def rounds(self, limit=20, before=None):
        raise NotImplementedError

    def upload_state(self, agency, upload_id, round=None):  # noqa: ARG002 - one round
        return self.files.upload_state(agency, upload_id)

    def uploads(self, agency, round=None):  # noqa: ARG002 - one round
        return self.files.uploads(agency)

    def done_agencies(self, after, limit, round=None):  # noqa: ARG002 - one round
        return self.files.done_after(after, limit)

    def agency_stats(self, round=None):  # noqa: ARG002 - one round
        return self.files.agency_stats()

    def export_bets(self, out, round=None):  # noqa: ARG002 - one round
        return self.files.round_id, self.files.export(out)


def store(path: Path, agencies: int = 3, winning_number: int = WIN) -> OneRound:
    return OneRound(RoundFiles(path, agencies, winning_number, lock_timeout=10))


def ledger_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in (path / "ledger.jsonl").read_bytes().splitlines()]


# -- appending ------------------------------------------------------------------------------


def test_fresh_store(tmp_path):
    s = store(tmp_path / "data")
    assert s.status() == RoundStatus(expected=3, done_count=0, drawn=False, bets=0)
    assert (tmp_path / "data" / "ledger.jsonl").read_bytes() == b""
    assert s.winners(1) is None
    s.check_health()


def test_append_then_status(tmp_path):
    s = store(tmp_path)
    assert s.append_chunk(chunk(1, 3)) == ChunkReceipt(1, 3, replayed=False)
    assert s.append_chunk(chunk(2, 5)) == ChunkReceipt(2, 5, replayed=False)
    assert s.append_chunk(chunk(1, 1, "y")) == ChunkReceipt(1, 1, replayed=False)
    assert s.status() == RoundStatus(expected=3, done_count=0, drawn=False, bets=9)
    assert [(r["a"], r["n"]) for r in ledger_lines(tmp_path)] == [(1, 3), (2, 5), (1, 1)]
    assert len(list(load_bets(tmp_path / "bets.csv"))) == 9


def test_chunks_are_contiguous_blocks(tmp_path):
    s = store(tmp_path)
    chunks = [chunk(1, 3, "a"), chunk(2, 4, "b"), chunk(1, 2, "c")]
    for c in chunks:
        s.append_chunk(c)
    data = (tmp_path / "bets.csv").read_bytes()
    assert data == b"".join(c.payload for c in chunks)
    ends = [r["end"] for r in ledger_lines(tmp_path)]
    assert ends == [len(chunks[0].payload), len(chunks[0].payload) + len(chunks[1].payload), len(data)]


def test_stored_rows_load_back(tmp_path):
    s = store(tmp_path)
    rows = [(1, 'Pérez, "Ana"', "O'Brien", "0001", "1999-03-17", 7574), (1, "Zoë\u00a0Ann", "李", "2", "2000-02-29", 0)]
    s.append_chunk(Chunk.from_rows(1, rows))
    loaded = [
        (b.agency, b.first_name, b.last_name, b.document, b.birthdate.isoformat(), b.number)
        for b in load_bets(tmp_path / "bets.csv")
    ]
    assert loaded == rows


# -- idempotency keys -------------------------------------------------------------------------


def test_key_replay_across_workers_and_restart(tmp_path):
    first, second = store(tmp_path), store(tmp_path)  # two workers on one dir
    assert first.append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=False)
    before = (tmp_path / "bets.csv").read_bytes()
    ledger_before = (tmp_path / "ledger.jsonl").read_bytes()

    assert second.append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=True)
    assert first.append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=True)
    restarted = store(tmp_path)
    assert restarted.append_chunk(chunk(1, 4, key="k1")) == ChunkReceipt(1, 4, replayed=True)

    assert (tmp_path / "bets.csv").read_bytes() == before
    assert (tmp_path / "ledger.jsonl").read_bytes() == ledger_before
    assert restarted.status().bets == 4 and second.status().bets == 4


def test_key_replay_answers_the_first_count(tmp_path):
    s = store(tmp_path)
    c = chunk(1, 4, key="k1")
    s.append_chunk(c)
    # same stored bytes, same fingerprint: the answer comes from the ledger record
    assert store(tmp_path).append_chunk(Chunk.from_rows(1, list(c.rows), "k1")).stored == 4


def test_same_key_different_rows_is_a_mismatch(tmp_path):
    first, second = store(tmp_path), store(tmp_path)
    first.append_chunk(chunk(1, 4, key="k1"))
    before = (tmp_path / "bets.csv").read_bytes()
    for s, other in (
        (first, chunk(1, 4, "other", key="k1")),
        (second, chunk(1, 5, key="k1")),
        (store(tmp_path), chunk(1, 3, key="k1")),
    ):
        with pytest.raises(IdempotencyMismatch):
            s.append_chunk(other)
    assert (tmp_path / "bets.csv").read_bytes() == before
    assert len(ledger_lines(tmp_path)) == 1
    assert first.status().bets == 4


def test_keys_are_per_agency(tmp_path):
    s = store(tmp_path)
    assert s.append_chunk(chunk(1, 2, key="same")).replayed is False
    assert s.append_chunk(chunk(2, 3, key="same")).replayed is False
    assert s.append_chunk(chunk(2, 3, key="same")) == ChunkReceipt(2, 3, replayed=True)
    with pytest.raises(IdempotencyMismatch):
        s.append_chunk(chunk(1, 3, key="same"))
    assert s.status().bets == 5


def test_chunk_without_key_is_stored_again(tmp_path):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 2))
    assert s.append_chunk(chunk(1, 2)).replayed is False
    assert s.status().bets == 4


# -- upload spans ----------------------------------------------------------------------------


def test_upload_span_replay_conflict_and_adjacency(tmp_path):
    first, second = store(tmp_path), store(tmp_path)
    assert first.append_chunk(chunk(1, 10, upload=("up", 0))).replayed is False
    # same range, same rows: a replay, from any worker
    assert second.append_chunk(chunk(1, 10, upload=("up", 0))) == ChunkReceipt(1, 10, replayed=True)
    # adjacent ranges are fine
    assert second.append_chunk(chunk(1, 10, upload=("up", 10), start=10)).replayed is False
    assert first.append_chunk(chunk(1, 5, upload=("up", 30), start=30)).replayed is False
    before = (tmp_path / "bets.csv").read_bytes()

    # overlapping: the conflict carries the merged stored ranges
    with pytest.raises(RangeConflict) as caught:
        first.append_chunk(chunk(1, 10, upload=("up", 15), start=15))
    assert caught.value.committed == [(0, 20), (30, 35)]
    with pytest.raises(RangeConflict) as caught:
        second.append_chunk(chunk(1, 2, upload=("up", 29), start=29))
    assert caught.value.committed == [(0, 20), (30, 35)]

    # the exact same range with other rows
    with pytest.raises(IdempotencyMismatch):
        first.append_chunk(chunk(1, 10, "other", upload=("up", 0)))

    assert (tmp_path / "bets.csv").read_bytes() == before
    assert first.status().bets == 25
    # the range just before a stored one, touching it, is fine too
    assert first.append_chunk(chunk(1, 10, upload=("up", 20), start=20)).replayed is False
    assert second.upload_state(1, "up").committed == [(0, 35)]


def test_upload_state_merges_ranges(tmp_path):
    s = store(tmp_path)
    for offset, n in ((10, 10), (0, 10), (40, 5), (50, 1)):
        s.append_chunk(chunk(1, n, upload=("file-a", offset), start=offset))
    s.append_chunk(chunk(2, 3, upload=("file-a", 0)))
    state = store(tmp_path).upload_state(1, "file-a")
    assert state.upload_id == "file-a" and state.committed == [(0, 20), (40, 45), (50, 51)]
    assert state.bets == 26
    assert s.upload_state(2, "file-a").committed == [(0, 3)]
    assert s.upload_state(3, "file-a") == UploadState("file-a")
    assert s.upload_state(1, "nope").bets == 0


def test_uploads_are_per_agency_and_per_id(tmp_path):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 5, upload=("u1", 0)))
    assert s.append_chunk(chunk(2, 5, upload=("u1", 0))).replayed is False
    assert s.append_chunk(chunk(1, 5, "z", upload=("u2", 0))).replayed is False


# -- done and the draw -------------------------------------------------------------------------


def test_done_is_idempotent(tmp_path):
    s = store(tmp_path)
    assert s.mark_done(2) == DoneReceipt(2, 1, 3, False)
    assert s.mark_done(2) == DoneReceipt(2, 1, 3, False)
    assert store(tmp_path).mark_done(2) == DoneReceipt(2, 1, 3, False)
    assert s.mark_done(1) == DoneReceipt(1, 2, 3, False)
    assert s.status() == RoundStatus(3, 2, False, 0)
    assert (tmp_path / "done.log").read_bytes() == b"2\n1\n"  # a line per agency, in the order they came
    assert not (tmp_path / "done.json").exists()


def test_a_done_writes_its_own_line_only_whatever_the_agencies(tmp_path):
    """Issue 21: a done appends its agency's line; it rewrites no file that grows with the agencies."""
    s = store(tmp_path, agencies=10_000)
    for agency in range(1, 2001):
        s.mark_done(agency)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert s.mark_done(9_999) == DoneReceipt(9_999, 2001, 10_000, False)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after.pop("done.log") == before.pop("done.log") + b"9999\n"
    assert after == before
    assert store(tmp_path).done_agencies(0, 10_000) == [*range(1, 2001), 9_999]


def test_a_data_dir_of_the_previous_release_keeps_its_done_agencies(tmp_path):
    """A round written by the release that kept done.json (rewritten whole on each done): its done
    agencies still count, done.json is never written again, and the round draws as before."""
    rows = chunk(1, 5, winners={2}).payload + chunk(2, 4, winners={0}).payload
    (tmp_path / "bets.csv").write_bytes(rows)
    (tmp_path / "ledger.jsonl").write_bytes(
        b"".join(
            orjson.dumps({"a": a, "n": n, "h": "f" * 64, "k": None, "end": end}) + b"\n"
            for a, n, end in ((1, 5, len(chunk(1, 5).payload)), (2, 4, len(rows)))
        )
    )
    (tmp_path / "round.json").write_bytes(orjson.dumps(files.round_record(1, RoundParameters(3, WIN), None)))
    legacy = orjson.dumps({"agencies": [1, 2]})
    (tmp_path / "done.json").write_bytes(legacy)
    s = store(tmp_path, agencies=3)
    assert s.status() == RoundStatus(3, 2, False, 9)
    assert s.mark_done(2) == DoneReceipt(2, 2, 3, False)  # already done, in done.json
    assert s.mark_done(3) == DoneReceipt(3, 3, 3, True)
    assert (tmp_path / "done.json").read_bytes() == legacy
    assert (tmp_path / "done.log").read_bytes() == b"3\n"
    fresh = store(tmp_path, agencies=3)
    assert fresh.status() == RoundStatus(3, 3, True, 9)
    assert (fresh.winners(1), fresh.winners(2), fresh.winners(3)) == (["1000002"], ["2000000"], [])


def test_a_torn_done_line_was_never_answered_and_is_cut(tmp_path):
    s = store(tmp_path)
    s.mark_done(1)
    with open(tmp_path / "done.log", "ab") as f:
        f.write(b"2")  # the process died mid-append: that done was never answered
    assert store(tmp_path).done_agencies(0, 9) == [1]
    assert (tmp_path / "done.log").read_bytes() == b"1\n"
    assert s.mark_done(2) == DoneReceipt(2, 2, 3, False)
    assert store(tmp_path).done_agencies(0, 9) == [1, 2]


def test_the_draw_is_read_once_per_process(tmp_path, monkeypatch):
    """A drawn round never changes: winners.json is parsed by the first request, not by each."""
    s = store(tmp_path, agencies=2)
    s.append_chunk(chunk(1, 5, winners={2}))
    s.mark_done(1)
    s.mark_done(2)
    reads: list[Path] = []
    real = files.read_json
    monkeypatch.setattr(files, "read_json", lambda path, problem: reads.append(path) or real(path, problem))
    reader = store(tmp_path, agencies=2)  # a worker starting on the drawn round
    for _ in range(5):
        assert reader.winners(1) == ["1000002"] and reader.winners(2) == []
        assert reader.status().drawn and reader.round_info().winners == 1
    assert reads.count(tmp_path / "winners.json") == 1


def test_bets_after_done_are_refused(tmp_path):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 2, key="k"))
    s.mark_done(1)
    before = (tmp_path / "bets.csv").read_bytes()
    with pytest.raises(AgencyClosed):
        s.append_chunk(chunk(1, 2, "new"))
    with pytest.raises(AgencyClosed):
        store(tmp_path).append_chunk(chunk(1, 2, "new", key="k2"))
    # a retry of what was stored before done is still answered
    assert s.append_chunk(chunk(1, 2, key="k")) == ChunkReceipt(1, 2, replayed=True)
    # other agencies go on
    assert s.append_chunk(chunk(2, 2)).replayed is False
    assert (tmp_path / "bets.csv").read_bytes().startswith(before)
    assert s.status().bets == 4


def test_draw_when_last_agency_is_done(tmp_path):
    s, other = store(tmp_path), store(tmp_path)
    s.append_chunk(chunk(1, 20, "a", winners={3, 7}))
    other.append_chunk(chunk(2, 10, "b"))
    s.append_chunk(chunk(3, 5, "c", winners={0}))
    s.append_chunk(chunk(1, 5, "d", start=100, winners={104}))
    assert s.mark_done(3) == DoneReceipt(3, 1, 3, False)
    assert s.mark_done(1) == DoneReceipt(1, 2, 3, False)
    assert s.winners(1) is None and other.winners(2) is None
    assert not (tmp_path / "winners.json").exists()
    assert other.status().drawn is False

    assert other.mark_done(2) == DoneReceipt(2, 3, 3, True)
    assert (tmp_path / "winners.json").exists()
    assert s.winners(1) == ["1000003", "1000007", "1000104"]
    assert s.winners(2) == []
    assert other.winners(3) == ["3000000"]
    assert store(tmp_path).winners(1) == ["1000003", "1000007", "1000104"]
    result = orjson.loads((tmp_path / "winners.json").read_bytes())
    assert result.pop("drawn_at").endswith("+00:00")  # when the draw happened, UTC
    assert result == {
        "winning_number": WIN,
        "bets": 40,
        "winners": {"1": ["1000003", "1000007", "1000104"], "2": [], "3": ["3000000"]},
    }
    assert s.status() == RoundStatus(3, 3, True, 40)
    assert s.mark_done(1) == DoneReceipt(1, 3, 3, True)


def test_draw_with_custom_winning_number(tmp_path):
    s = store(tmp_path, agencies=1, winning_number=5)
    s.append_chunk(
        Chunk.from_rows(
            1,
            [
                (1, "a", "b", "11", "2000-01-01", 5),
                (1, "a", "b", "12", "2000-01-01", 7574),
                (1, "a", "b", "13", "2000-01-01", 15),
                (1, "a", "b", "14", "2000-01-01", 5),
            ],
        )
    )
    assert s.mark_done(1).drawn is True
    assert s.winners(1) == ["11", "14"]


def test_winners_of_an_agency_outside_the_round(tmp_path):
    s = store(tmp_path, agencies=1)
    s.append_chunk(chunk(1, 1))
    s.mark_done(1)
    assert s.winners(1) == []
    assert s.winners(2) == []


def test_round_without_any_bet_can_be_drawn(tmp_path):
    # Every agency says done without sending a single bet: the draw must still happen,
    # with no winners, instead of failing because bets.csv was never created.
    s = store(tmp_path, agencies=2)
    assert s.mark_done(1) == DoneReceipt(1, 1, 2, False)
    assert s.mark_done(2) == DoneReceipt(2, 2, 2, True)
    assert s.winners(1) == [] and s.winners(2) == []
    assert s.status() == RoundStatus(2, 2, True, 0)


def test_after_the_draw_replays_answered_new_chunks_refused(tmp_path):
    s = store(tmp_path, agencies=2)
    s.append_chunk(chunk(1, 3, key="k"))
    s.append_chunk(chunk(2, 3, upload=("u", 0)))
    s.mark_done(1)
    assert s.mark_done(2).drawn is True
    before = (tmp_path / "bets.csv").read_bytes()
    fresh = store(tmp_path, agencies=2)
    assert fresh.append_chunk(chunk(1, 3, key="k")) == ChunkReceipt(1, 3, replayed=True)
    assert fresh.append_chunk(chunk(2, 3, upload=("u", 0))) == ChunkReceipt(2, 3, replayed=True)
    for c in (chunk(1, 3, "new"), chunk(2, 3, "new", key="k2"), chunk(2, 3, upload=("u", 3), start=3)):
        with pytest.raises(AgencyClosed, match="draw"):
            fresh.append_chunk(c)
    with pytest.raises(IdempotencyMismatch):
        fresh.append_chunk(chunk(1, 3, "other", key="k"))
    assert (tmp_path / "bets.csv").read_bytes() == before


@pytest.fixture
def lottery_log(caplog, monkeypatch):
    """Records of the "lottery" logger at INFO, whatever create_app did to it earlier."""
    logger = logging.getLogger("lottery")
    monkeypatch.setattr(logger, "propagate", False)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel also clears the isEnabledFor cache
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def test_one_draw_log_line_per_round(tmp_path, lottery_log):
    a, b = store(tmp_path, agencies=2), store(tmp_path, agencies=2)
    a.append_chunk(chunk(1, 10, winners={1, 2}))
    b.append_chunk(chunk(2, 10))
    a.mark_done(1)
    b.mark_done(2)
    a.mark_done(2)
    b.mark_done(2)
    a.status()
    b.status()
    store(tmp_path, agencies=2).status()
    a.winners(1)
    draws = [r.getMessage() for r in lottery_log.records if "action: sorteo" in r.getMessage()]
    assert draws == [
        "action: sorteo | result: success | apuestas: 20 | cant_ganadores: 2 | ronda: 1 | numero_ganador: 7574"
    ]
    assert all(r.name == "lottery" for r in lottery_log.records)
    done_lines = [r.getMessage() for r in lottery_log.records if "agencia_finalizada" in r.getMessage()]
    assert len(done_lines) == 2


# -- recovery ------------------------------------------------------------------------------


def test_garbage_after_last_commit_is_cut_off(tmp_path, lottery_log):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 3))
    s.append_chunk(chunk(2, 3, key="k"))
    before = (tmp_path / "bets.csv").read_bytes()
    with open(tmp_path / "bets.csv", "ab") as f:
        f.write(b'1,half a row,"unterminated')
    restarted = store(tmp_path)
    assert (tmp_path / "bets.csv").read_bytes() == before
    assert restarted.status().bets == 6
    assert any("action: reparacion" in r.getMessage() for r in lottery_log.records)
    # and the store goes on: a new chunk lands right after the committed bytes
    c = chunk(3, 2)
    restarted.append_chunk(c)
    assert (tmp_path / "bets.csv").read_bytes() == before + c.payload
    assert [b.agency for b in load_bets(tmp_path / "bets.csv")] == [1, 1, 1, 2, 2, 2, 3, 3]


def test_running_store_repairs_a_crashed_write_of_another_worker(tmp_path):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 3))
    before = (tmp_path / "bets.csv").read_bytes()
    with open(tmp_path / "bets.csv", "ab") as f:
        f.write(chunk(2, 50).payload)  # a whole chunk whose ledger line never made it
    assert s.status().bets == 3
    assert (tmp_path / "bets.csv").read_bytes() == before


def test_torn_ledger_line_and_its_bets_are_cut_off(tmp_path):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 3, key="k1"))
    s.append_chunk(chunk(2, 2))
    bets_before = (tmp_path / "bets.csv").read_bytes()
    ledger_before = (tmp_path / "ledger.jsonl").read_bytes()
    torn = chunk(3, 4, key="k3")
    with open(tmp_path / "bets.csv", "ab") as f:
        f.write(torn.payload)
    record = orjson.dumps(
        {"a": 3, "n": 4, "h": torn.fingerprint, "k": "k3", "end": len(bets_before) + len(torn.payload)}
    )
    with open(tmp_path / "ledger.jsonl", "ab") as f:
        f.write(record[: len(record) // 2])  # no newline: the commit never finished

    restarted = store(tmp_path)
    assert (tmp_path / "ledger.jsonl").read_bytes() == ledger_before
    assert (tmp_path / "bets.csv").read_bytes() == bets_before
    assert restarted.status().bets == 5
    # the torn chunk was never committed: sending it again stores it (not a replay)
    assert restarted.append_chunk(torn) == ChunkReceipt(3, 4, replayed=False)
    assert store(tmp_path).append_chunk(torn) == ChunkReceipt(3, 4, replayed=True)
    assert (tmp_path / "bets.csv").read_bytes() == bets_before + torn.payload
    assert len(ledger_lines(tmp_path)) == 3


def test_torn_ledger_line_seen_by_a_running_store(tmp_path):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 3))
    bets_before = (tmp_path / "bets.csv").read_bytes()
    ledger_before = (tmp_path / "ledger.jsonl").read_bytes()
    with open(tmp_path / "bets.csv", "ab") as f:
        f.write(b"2,a,b,1,2000-01-01,1\n")
    with open(tmp_path / "ledger.jsonl", "ab") as f:
        f.write(b'{"a":2,"n":1,')
    assert s.append_chunk(chunk(2, 1)).replayed is False
    assert s.status().bets == 4
    assert (tmp_path / "bets.csv").read_bytes() == bets_before + chunk(2, 1).payload
    assert (tmp_path / "ledger.jsonl").read_bytes().startswith(ledger_before)
    assert len(ledger_lines(tmp_path)) == 2


def test_bets_without_ledger_refuses_to_serve(tmp_path, caplog):
    (tmp_path / "bets.csv").write_bytes(b"1,a,b,1,2000-01-01,1\n")
    s = store(tmp_path)  # opens (a worker must not die on it) but serves nothing
    assert "has bets but no ledger.jsonl" in caplog.text
    with pytest.raises(StorageUnavailable, match="ledger"):
        s.status()
    with pytest.raises(StorageUnavailable, match="ledger"):
        s.append_chunk(chunk(1, 1))
    assert (tmp_path / "bets.csv").read_bytes() == b"1,a,b,1,2000-01-01,1\n"


def test_empty_bets_without_ledger_is_fine(tmp_path):
    (tmp_path / "bets.csv").write_bytes(b"")
    assert store(tmp_path).status().bets == 0


def test_bets_shorter_than_ledger_refuses(tmp_path):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 3))
    data = (tmp_path / "bets.csv").read_bytes()
    (tmp_path / "bets.csv").write_bytes(data[:-5])
    with pytest.raises(StorageUnavailable, match="shorter"):
        store(tmp_path).status()
    with pytest.raises(StorageUnavailable, match="shorter"):
        s.append_chunk(chunk(1, 1))  # the running store notices it too
    assert (tmp_path / "bets.csv").read_bytes() == data[:-5]


def test_crash_between_done_and_draw(tmp_path):
    s = store(tmp_path, agencies=2)
    s.append_chunk(chunk(1, 5, winners={2}))
    s.append_chunk(chunk(2, 5, winners={0, 4}))
    s.mark_done(1)
    # the last done's line was written, then the process died before the draw
    with open(tmp_path / "done.log", "ab") as f:
        f.write(b"2\n")
    assert not (tmp_path / "winners.json").exists()

    fresh = store(tmp_path, agencies=2)
    assert fresh.winners(2) == ["2000000", "2000004"]
    assert (tmp_path / "winners.json").exists()
    assert fresh.winners(1) == ["1000002"]
    assert store(tmp_path, agencies=2).status() == RoundStatus(2, 2, True, 10)


def test_crash_between_done_and_draw_status_draws(tmp_path):
    s = store(tmp_path, agencies=1)
    s.append_chunk(chunk(1, 5, winners={1}))
    (tmp_path / "done.json").write_bytes(orjson.dumps({"agencies": [1]}))
    assert store(tmp_path, agencies=1).status() == RoundStatus(1, 1, True, 5)
    assert s.winners(1) == ["1000001"]


def test_health_fails_when_dir_is_gone(tmp_path):
    import shutil

    s = store(tmp_path / "data")
    s.check_health()
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".health")] == []
    shutil.rmtree(tmp_path / "data")
    with pytest.raises(StorageUnavailable, match="not writable"):
        s.check_health()


# -- the draw's scan ------------------------------------------------------------------------

TRICKY_FIRST = ["Juan,7574", 'Ana "7574"', "Luis 7574", "Pé,rez", '"', "x,7574\u00a0y", "7574", "Zoë", "O'Brien 1"]
TRICKY_LAST = ["Gómez,7574", "Díaz 7574", ",", '7574"', "Smith", "李,7574", "López 12"]


def tricky_rows(n: int, seed: int = 7) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        number = (
            rng.choice([7574, 7574, 7, 0, 17574 % 10000, 75740 % 10000, 757, 4])
            if rng.random() < 0.05
            else rng.randrange(10000)
        )
        rows.append(
            (
                rng.randint(1, 5),
                rng.choice(TRICKY_FIRST) + (str(i) if rng.random() < 0.3 else ""),
                rng.choice(TRICKY_LAST),
                str(rng.randrange(10**10)).zfill(rng.randint(1, 10)),
                f"{rng.randint(1900, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                number,
            )
        )
    return rows


@pytest.fixture(scope="module")
def tricky_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "bets.csv"
    rows = tricky_rows(20_000)
    with open(path, "wb") as f:
        for start in range(0, len(rows), 997):
            f.write(encode_rows(rows[start : start + 997]))
    return path


def expected_winners(path: Path, winning_number: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for bet in load_bets(path):
        if has_won(bet, winning_number):
            out[bet.agency].append(bet.document)
    return dict(out)


@pytest.mark.parametrize("block", [200, 1000, 4096, files.SCAN_BLOCK])  # a block holds at least one line
@pytest.mark.parametrize("winning_number", [7574, 7, 0])
def test_scan_winners_matches_load_bets(tricky_file, monkeypatch, block, winning_number):
    monkeypatch.setattr(files, "SCAN_BLOCK", block)
    expected = expected_winners(tricky_file, winning_number)
    assert sum(len(v) for v in expected.values()) > 20  # the file really has winners
    assert scan_winners(tricky_file, tricky_file.stat().st_size, winning_number) == expected


def test_scan_winners_reads_only_up_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "SCAN_BLOCK", 30)  # just over one line: every line crosses a block boundary
    committed = encode_rows([(1, "a", "b", "11", "2000-01-01", 7574), (2, "a", "b", "22", "2000-01-01", 1)])
    path = tmp_path / "bets.csv"
    path.write_bytes(committed + encode_rows([(3, "a", "b", "33", "2000-01-01", 7574)]))
    assert scan_winners(path, len(committed), 7574) == {1: ["11"]}
    assert scan_winners(path, path.stat().st_size, 7574) == {1: ["11"], 3: ["33"]}


def test_draw_through_the_store_matches_load_bets(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "SCAN_BLOCK", 1000)
    rows = tricky_rows(5_000, seed=11)
    s = store(tmp_path, agencies=5)
    for agency in range(1, 6):
        own = [r for r in rows if r[0] == agency]
        for start in range(0, len(own), 300):
            s.append_chunk(Chunk.from_rows(agency, own[start : start + 300]))
    for agency in range(1, 6):
        s.mark_done(agency)
    expected = expected_winners(tmp_path / "bets.csv", WIN)
    assert {a: s.winners(a) for a in range(1, 6)} == {a: expected.get(a, []) for a in range(1, 6)}


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_appends_from_two_workers(tmp_path):
    workers = [store(tmp_path, agencies=8), store(tmp_path, agencies=8)]
    threads_n, chunks_n, rows_n = 8, 50, 3
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def run(t: int) -> None:
        try:
            barrier.wait()
            for c in range(chunks_n):
                rows = [(t + 1, f"t{t}c{c}", f"r{i}", f"{t}{c:03d}{i}", "2000-01-01", i) for i in range(rows_n)]
                receipt = workers[(t + c) % 2].append_chunk(Chunk.from_rows(t + 1, rows, idempotency_key=f"t{t}c{c}"))
                assert receipt == ChunkReceipt(t + 1, rows_n, replayed=False)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)

    bets = list(load_bets(tmp_path / "bets.csv"))
    assert len(bets) == threads_n * chunks_n * rows_n
    seen = [(b.first_name, b.last_name) for b in bets]
    assert len(set(seen)) == len(seen)  # every row exactly once
    # every chunk is one contiguous block, in its own order
    for start in range(0, len(bets), rows_n):
        block = bets[start : start + rows_n]
        assert len({b.first_name for b in block}) == 1
        assert [b.last_name for b in block] == [f"r{i}" for i in range(rows_n)]
    assert {b.first_name for b in bets} == {f"t{t}c{c}" for t in range(threads_n) for c in range(chunks_n)}
    ledger = ledger_lines(tmp_path)
    assert len(ledger) == threads_n * chunks_n
    assert ledger[-1]["end"] == (tmp_path / "bets.csv").stat().st_size
    assert workers[0].status().bets == workers[1].status().bets == store(tmp_path, agencies=8).status().bets == 1200


# -- failed writes -----------------------------------------------------------------------------


def failing_append(fail_on: str, partial: bool = True):
    """An AppendFile.append that writes half of the data to ``fail_on`` and then hits a full disk."""
    real = AppendFile.append

    def append(self: AppendFile, data: bytes, *, sync: bool) -> None:
        if Path(self.path).name == fail_on:
            if partial:
                with open(self.path, "ab") as f:
                    f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, data, sync=sync)

    return append


@pytest.mark.parametrize("fail_on", ["bets.csv", "ledger.jsonl"])
def test_failed_write_stores_nothing_and_the_store_goes_on(tmp_path, monkeypatch, fail_on):
    s = store(tmp_path)
    s.append_chunk(chunk(1, 3, key="a"))
    bets_before = (tmp_path / "bets.csv").read_bytes()
    ledger_before = (tmp_path / "ledger.jsonl").read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(AppendFile, "append", failing_append(fail_on))
        with pytest.raises(StorageUnavailable, match="No space left"):
            s.append_chunk(chunk(2, 4, key="b", upload=("u", 0)))
    assert (tmp_path / "bets.csv").read_bytes() == bets_before
    assert (tmp_path / "ledger.jsonl").read_bytes() == ledger_before
    assert s.status().bets == 3
    assert s.upload_state(2, "u").committed == []
    # the failed chunk was not stored, so its retry is stored now (not answered as a replay)
    assert s.append_chunk(chunk(2, 4, key="b", upload=("u", 0))) == ChunkReceipt(2, 4, replayed=False)
    assert store(tmp_path).status().bets == 7
    assert (tmp_path / "bets.csv").read_bytes() == bets_before + chunk(2, 4).payload


@pytest.mark.parametrize("second", ["same key", "overlapping range"])
def test_failed_group_write_tells_no_chunk_of_the_batch_it_is_stored(tmp_path, monkeypatch, second):
    """Two chunks of one worker committed together; the write fails. Neither may be told its bets are stored.

    Reaches into the committer (app/store/batch.py) to put both chunks in one batch
    deterministically: a first chunk holds the committer at the round's thread lock, which the
    test holds until both chunks wait in the queue.
    """
    s = FileStore(tmp_path, agencies=3, winning_number=WIN, lock_timeout=10)
    files = s._round(1)
    first = chunk(1, 3, key="dup", upload=("u", 0))
    other = chunk(1, 3, key="dup", upload=("u", 0)) if second == "same key" else chunk(1, 3, upload=("u", 1), start=1)
    results: list[object] = [None, None, None]

    def run(i: int, c: Chunk) -> None:
        try:
            results[i] = s.append_chunk(c)
        except Exception as error:  # noqa: BLE001 - the outcome is what is checked
            results[i] = error

    def queued() -> int:
        with s._committer._wake:
            return len(s._committer._queue)

    assert files._thread_lock.acquire(timeout=5)
    threads = [threading.Thread(target=run, args=(2, chunk(2, 1)))]  # the one that holds the committer
    threads[0].start()
    until(lambda: s._committer._thread is not None and queued() == 0)
    threads += [threading.Thread(target=run, args=(0, first)), threading.Thread(target=run, args=(1, other))]
    threads[1].start()
    threads[2].start()
    until(lambda: queued() == 2)
    with monkeypatch.context() as patch:
        patch.setattr(AppendFile, "append", failing_append("bets.csv", partial=False))
        files._thread_lock.release()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert FileStore(tmp_path, agencies=3, winning_number=WIN).status().bets == 0  # nothing was stored...
    # ...so no answer may say otherwise: not a replay receipt, not a conflict with "stored" lines.
    assert [type(r).__name__ for r in results] == ["StorageUnavailable"] * 3, results
    s.close()


def until(condition, timeout: float = 10) -> None:
    """Wait for an observed state of other threads."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.001)


# -- a corrupt data dir is refused, never guessed around (issue 9, item 5) ----------------------------


def stored_round(path: Path) -> tuple[RoundFiles, bytes]:
    """A round with two committed chunks, agency 1 done; returns the store and its ledger."""
    s = store(path)
    s.append_chunk(chunk(1, 3, key="a", upload=("u", 0)))
    s.append_chunk(chunk(2, 2))
    s.mark_done(1)
    return s, (path / "ledger.jsonl").read_bytes()


def valid_record(path: Path) -> bytes:
    end = (path / "bets.csv").stat().st_size
    return orjson.dumps({"a": 2, "n": 1, "h": "0" * 64, "k": None, "end": end}) + b"\n"


# What a power cut, a full disk or a hand edit can leave in the ledger, after its committed lines:
# each is a complete line (it ends in a newline) that is not a record the store wrote.
BAD_LEDGER_LINES = {
    "NUL bytes": b"\0" * 37 + b"\n",
    "not JSON": b'{"a": 1, "n": \n',
    "not an object": b"[1, 2, 3]\n",
    "empty line": b"\n",
    "a field missing": b'{"a": 1, "h": "x", "end": 10}\n',
    "count of the wrong type": b'{"a": 1, "n": "3", "h": "x", "end": 10}\n',
    "count as a boolean": b'{"a": 1, "n": true, "h": "x", "end": 10}\n',
    "upload without offset": b'{"a": 1, "n": 3, "h": "x", "u": "up", "end": 999999}\n',
    "end going back": b'{"a": 1, "n": 3, "h": "x", "end": 1}\n',
}


EVERY_CALL = [
    lambda s: s.append_chunk(chunk(3, 1)),
    lambda s: s.mark_done(2),
    lambda s: s.status(),
    lambda s: s.upload_state(1, "u"),
    lambda s: s.uploads(1),
    lambda s: s.winners(1),
    lambda s: s.check_health(),
]


@pytest.mark.parametrize("bad", BAD_LEDGER_LINES.values(), ids=BAD_LEDGER_LINES.keys())
def test_a_complete_but_invalid_ledger_line_answers_503_naming_file_and_offset(tmp_path, caplog, bad):
    running, ledger = stored_round(tmp_path)
    bets = (tmp_path / "bets.csv").read_bytes()
    with open(tmp_path / "ledger.jsonl", "ab") as f:
        f.write(bad + valid_record(tmp_path))  # a valid record after it: the bad line is not a torn tail
    where = rf"ledger\.jsonl: the line at byte {len(ledger)} is not a valid ledger record"
    fresh = store(tmp_path)  # a worker booting on it: starts, and says why it will not serve
    assert re.search(where, caplog.text)
    for s in (fresh, running):
        for call in EVERY_CALL:
            with pytest.raises(StorageUnavailable, match=where):
                call(s)
    assert (tmp_path / "bets.csv").read_bytes() == bets  # nothing cut, nothing guessed
    assert (tmp_path / "ledger.jsonl").read_bytes().startswith(ledger + bad)

    (tmp_path / "ledger.jsonl").write_bytes(ledger)  # the operator repairs it
    for s in (fresh, running):
        s.check_health()
        assert s.status() == RoundStatus(3, 1, False, 5)
    assert fresh.append_chunk(chunk(1, 3, key="a", upload=("u", 0))).replayed  # the index was not read twice


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("done.log", b"1\n\0\0\n", ": the line at byte 2 is not what the store wrote"),
        ("done.log", b"1\nx\n2\n", ": the line at byte 2 is not what the store wrote"),
        ("done.log", b"\n", ": the line at byte 0 is not what the store wrote"),
        ("done.json", b"\0\0\0\0", "not valid JSON (at byte 0"),
        ("done.json", b'{"agencies": [1, "2"]}', "at byte 0: expected"),
        ("done.json", b'{"agencies": [1, 2', "not valid JSON (at byte 18"),
        ("winners.json", b'{"winners": {"1": [1]}}', "at byte 0: expected"),
        ("winners.json", b"", "not valid JSON (at byte 0"),
        ("round.json", b'{"agencies": 3}', "at byte 0: expected"),
        ("round.json", b'{"agencies": 0, "winning_number": 7574}', "out of range"),
        ("round.json", b"\0" * 8, "not valid JSON (at byte 0"),
    ],
)
def test_a_corrupt_json_file_answers_503_naming_it(tmp_path, name, content, where):
    running, _ = stored_round(tmp_path)
    good = (tmp_path / name).read_bytes() if (tmp_path / name).exists() else None
    (tmp_path / name).write_bytes(content)
    fresh = store(tmp_path)
    message = re.escape(f"{tmp_path / name}") + ".*" + re.escape(where)
    # round.json and an earlier release's done.json are read once: a running store read them already
    for s in (fresh, running) if name not in ("round.json", "done.json") else (fresh,):
        for call in EVERY_CALL:
            with pytest.raises(StorageUnavailable, match=message):
                call(s)
    if good is None:
        (tmp_path / name).unlink()
    else:
        (tmp_path / name).write_bytes(good)
    fresh.check_health()
    assert fresh.status() == RoundStatus(3, 1, False, 5)


@pytest.mark.parametrize("ledger_line", ["whole", "torn"])
def test_undo_never_cuts_bets_when_the_ledger_cannot_be_cut(tmp_path, monkeypatch, ledger_line):
    """The write of the ledger fails after writing its line (whole: fdatasync failed; torn: disk
    full), and then cutting the ledger back fails too. bets.csv must stay as it is: cutting it
    would leave a ledger line pointing past its end, and the store refusing to serve for good."""
    s = store(tmp_path)
    s.append_chunk(chunk(1, 3, key="a"))
    bets_before = (tmp_path / "bets.csv").read_bytes()
    real_append, real_open = AppendFile.append, open

    def append(self: AppendFile, data: bytes, *, sync: bool) -> None:
        if Path(self.path).name == "ledger.jsonl":
            with real_open(self.path, "ab") as f:
                f.write(data if ledger_line == "whole" else data[: len(data) // 2])
            raise OSError(errno.EIO, "Input/output error")
        real_append(self, data, sync=sync)

    def open_failing_ledger(path, mode="r", *args, **kwargs):
        if Path(path).name == "ledger.jsonl" and mode == "r+b":
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(AppendFile, "append", append)
        patch.setattr("builtins.open", open_failing_ledger)
        with pytest.raises(StorageUnavailable, match="Input/output error"):
            s.append_chunk(chunk(2, 4, key="b"))
        assert (tmp_path / "bets.csv").read_bytes() == bets_before + chunk(2, 4).payload  # not cut
    # The next turn at the store settles it either way, and the store serves.
    if ledger_line == "whole":  # the chunk is committed after all: its retry is a replay
        assert s.append_chunk(chunk(2, 4, key="b")) == ChunkReceipt(2, 4, replayed=True)
        assert store(tmp_path).status().bets == 7
    else:  # a torn line: not committed, cut off with its bets
        assert store(tmp_path).status().bets == 3
        assert (tmp_path / "bets.csv").read_bytes() == bets_before
        assert s.append_chunk(chunk(2, 4, key="b")) == ChunkReceipt(2, 4, replayed=False)
    assert len(ledger_lines(tmp_path)) == 2


# -- the round's parameters (issue 9, item 3) ------------------------------------------------------


def test_the_round_records_its_parameters_on_first_open(tmp_path):
    s = store(tmp_path, agencies=3, winning_number=42)
    recorded = orjson.loads((tmp_path / "round.json").read_bytes())
    assert {k: recorded[k] for k in ("agencies", "winning_number")} == {"agencies": 3, "winning_number": 42}
    assert datetime.fromisoformat(recorded["opened_at"]).tzinfo is not None
    assert (s.agencies, s.winning_number, s.expected) == (3, 42, 3)
    again = store(tmp_path, agencies=7, winning_number=1)
    assert (again.agencies, again.winning_number) == (3, 42)
    assert (tmp_path / "round.json").read_bytes() == orjson.dumps(recorded)


def test_a_data_dir_of_the_previous_release_records_the_settings_at_first_start(tmp_path):
    stored_round(tmp_path)
    (tmp_path / "round.json").unlink()  # as the previous release left it
    s = store(tmp_path, agencies=4, winning_number=9)
    assert (s.agencies, s.winning_number) == (4, 9)
    assert store(tmp_path, agencies=2).agencies == 4
    assert s.status() == RoundStatus(4, 1, False, 5)


def test_the_master_warns_once_when_the_settings_differ_from_the_round(tmp_path):
    from app.settings import Settings
    from app.store import round_settings_warning

    def settings(agencies: int, winning_number: int = WIN) -> Settings:
        return Settings(data_dir=tmp_path, agencies=agencies, winning_number=winning_number)

    assert round_settings_warning(settings(3)) is None  # no round yet
    store(tmp_path, agencies=3)
    assert round_settings_warning(settings(3)) is None
    warning = round_settings_warning(settings(2, 1234))
    assert warning is not None and len(warning.splitlines()) == 1
    for part in (
        "WARNING",
        "LOTTERY_AGENCIES=3 LOTTERY_WINNING_NUMBER=7574",
        str(tmp_path / "round.json"),
        "LOTTERY_AGENCIES=2 LOTTERY_WINNING_NUMBER=1234",
        "KEEPS its recorded values",
    ):
        assert part in warning
    (tmp_path / "round.json").write_bytes(b"\0")
    assert round_settings_warning(settings(2)) is None  # unreadable: the workers answer 503 and say why


# -- deciding a chunk of an upload: the indexed spans answer as the full scan does (item 6) ----------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(1, 12), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_indexed_spans_decide_every_chunk_as_the_full_scan_does(chunks):
    """Random chunks of one upload (offset, count, same bets or other bets), each decided twice:
    against every stored span (the old way) and against the one SpanIndex.neighbour picks."""
    index, naive = SpanIndex(), []
    for offset, count, other_bets in chunks:
        c = Chunk.from_rows(1, make_rows(1, count, "o" if other_bets else "x", offset), upload=UploadSpan("u", offset))

        def decide(spans, c=c):
            try:
                return replay_by_range(c, spans, lambda: merge_ranges([(s, e) for s, e, *_ in naive]))
            except (RangeConflict, IdempotencyMismatch) as error:  # the message may name another overlapped span
                return type(error).__name__, getattr(error, "committed", None)

        answer = decide(naive)
        assert decide(index.neighbour(offset + count)) == answer
        if answer is None:  # accepted: both remember it
            naive.append((offset, offset + count, c.fingerprint, None, None))
            index.add(offset, offset + count, c.fingerprint)
    assert list(index) == sorted(naive) and index.ranges() == merge_ranges([(s, e) for s, e, *_ in naive])


def test_deciding_a_chunk_looks_at_one_stored_span_however_many_there_are(tmp_path, monkeypatch):
    seen: list[int] = []
    real = files.replay_by_range

    def counting(chunk_, spans, committed):
        spans = list(spans)
        seen.append(len(spans))
        return real(chunk_, spans, committed)

    monkeypatch.setattr(files, "replay_by_range", counting)
    s = store(tmp_path)
    for offset in range(0, 600, 2):
        s.append_chunk(chunk(1, 2, upload=("long", offset), start=offset))
    s.append_chunk(chunk(1, 2, upload=("long", 100), start=100))  # a replay in the middle
    with pytest.raises(RangeConflict):
        s.append_chunk(chunk(1, 2, upload=("long", 301), start=301))
    assert max(seen) == 1 and len(seen) == 301  # every chunk but the upload's first, decided on one span


def test_the_app_closes_its_store_when_it_shuts_down(tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    closed: list[bool] = []

    class Closing(OneRound):
        def close(self) -> None:
            closed.append(True)

    app = create_app(Settings(data_dir=tmp_path, agencies=3), Closing(RoundFiles(tmp_path, 3, WIN)))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert closed == []
    assert closed == [True]


def test_dones_queued_in_one_process_reach_done_log_in_one_append(tmp_path, monkeypatch):
    """Group commit of dones: those waiting for the lock are written with one append (one fdatasync)
    by whichever thread's turn it is; each gets its own receipt, and the last one draws, once."""
    from app.store.files import FileStore

    s = FileStore(tmp_path, 40, WIN, lock_timeout=10)
    round_files = s._round(None)
    appends: list[bytes] = []
    real = RoundFiles._append
    monkeypatch.setattr(
        RoundFiles, "_append", staticmethod(lambda path, data: (appends.append(data), real(path, data))[1])
    )
    receipts: dict[int, DoneReceipt] = {}
    with round_files._thread_lock:  # this process's turn is taken: every done queues
        threads = [threading.Thread(target=lambda a=a: receipts.update({a: s.mark_done(a)})) for a in range(1, 41)]
        for t in threads:
            t.start()
        while len(round_files._done_queue) < 40:  # an observed event: every done waits in the queue
            threading.Event().wait(0.001)
    for t in threads:
        t.join(30)
    assert appends == [b"".join(b"%d\n" % a for a in sorted(receipts, key=lambda a: receipts[a].done))]
    assert sorted(r.done for r in receipts.values()) == list(range(1, 41))
    assert [a for a, r in receipts.items() if r.drawn] == [max(receipts, key=lambda a: receipts[a].done)]
    assert s.status() == RoundStatus(40, 40, True, 0)


@settings(max_examples=40, deadline=None)
@given(
    agencies=st.integers(1, 6),
    dones=st.lists(st.tuples(st.booleans(), st.integers(0, 8)), max_size=25),
    legacy=st.sets(st.integers(1, 6), max_size=3),
    torn=st.booleans(),
)
def test_done_agencies_as_two_processes_and_a_restart_see_them(tmp_path_factory, agencies, dones, legacy, torn):
    """Generated dones (repeated, outside the round, from either of two "processes"), over an
    earlier release's done.json and maybe a torn last line: every store answers from the same
    set, each agency's line is written once, and a done draws when, and only when, 1..N are done."""
    path = tmp_path_factory.mktemp("done")
    legacy = {a for a in legacy if a <= agencies}
    if legacy:
        (path / "done.json").write_bytes(orjson.dumps({"agencies": sorted(legacy)}))
    stores = (store(path, agencies), store(path, agencies))
    done, drawn = set(legacy), False
    for which, agency in dones:
        if not 1 <= agency <= agencies:
            with pytest.raises(AgencyClosed):
                stores[which].mark_done(agency)
            continue
        receipt = stores[which].mark_done(agency)
        done.add(agency)
        assert (receipt.done, receipt.drawn) == (len(done), len(done) == agencies)
        drawn = receipt.drawn
    if torn:
        with open(path / "done.log", "ab") as f:
            f.write(b"1")  # a crash mid-append: never answered, so not done
    for s in (*stores, store(path, agencies)):
        status = s.status(draw=False)
        assert (s.done_agencies(0, agencies), status.done_count, status.drawn) == (
            sorted(done),
            len(done),
            drawn,
        )  # a legacy set alone is drawn by a query
    lines = (path / "done.log").read_bytes().split() if (path / "done.log").exists() else []
    assert sorted(int(line) for line in lines) == sorted(done - legacy)


def test_status_takes_no_lock_while_nothing_was_committed(tmp_path):
    """/status asked by every agency at once must not queue every worker on the round's lock: it
    answers from memory while the files are as this process read them, and reads them (under
    the lock) once another worker committed."""
    from app.store.files import FileStore

    s = FileStore(tmp_path, 3, WIN, lock_timeout=0.5)
    s.append_chunk(chunk(1, 2))
    s.mark_done(1)
    with s._round(None)._thread_lock:  # this process's turn is taken (a long commit, say)
        assert s.status() == RoundStatus(3, 1, False, 2)
        FileStore(tmp_path, 3, WIN, lock_timeout=0.5).mark_done(2)  # another worker's done
        with pytest.raises(StorageUnavailable, match="busy"):
            s.status()  # done.log grew: only the lock can say what it holds now
    assert s.status() == RoundStatus(3, 2, False, 2)


def test_a_rounds_info_takes_no_lock_while_nothing_was_committed(tmp_path):
    """GET /rounds/{n} from every open page and agency at once: answered as /status is, from
    memory while the files are as this process read them (round.json is read once)."""
    from app.store.files import FileStore

    s = FileStore(tmp_path, 3, WIN, lock_timeout=0.5)
    s.append_chunk(chunk(1, 2))
    s.mark_done(1)
    with s._round(None)._thread_lock:  # this process's turn is taken (a long commit, say)
        info = s.round_info()
        assert (info.round, info.agencies, info.done_count, info.bets, info.winners) == (1, 3, 1, 2, None)
        assert info.opened_at is not None and not info.random
        FileStore(tmp_path, 3, WIN, lock_timeout=0.5).mark_done(2)  # another worker's done
        with pytest.raises(StorageUnavailable, match="busy"):
            s.round_info()  # done.log grew: only the lock can say what it holds now
    assert s.round_info().done_count == 2


# -- per-request reads at a cost of their own answer (issue 21) ----------------------------------


class NoFullScan(dict):
    """A dict of the store's index whose every-entry walks fail: a per-request read must look
    up its own entries, not walk every agency's."""

    def _refuse(self, *_args, **_kwargs):
        raise AssertionError("a walk over every entry of the index")

    __iter__ = items = values = keys = _refuse  # type: ignore[assignment]


def test_an_agencys_uploads_are_read_without_walking_every_agencys(tmp_path: Path) -> None:
    store = files.FileStore(tmp_path, 500, WIN)
    for agency in range(1, 501):
        store.append_chunk(chunk(agency, 2, upload=(f"up-{agency}", 0)))
    store.append_chunk(chunk(7, 3, upload=("again", 0)))
    index = store._round(1)._index
    index.spans = NoFullScan(index.spans)
    assert [(u.upload_id, u.bets, u.chunks) for u in store.uploads(7)] == [("up-7", 2, 1), ("again", 3, 1)]
    assert store.uploads(8)[0].upload_id == "up-8" and store.uploads(501) == []


def test_listing_rounds_reads_the_ones_listed_not_the_data_dirs_listing(tmp_path: Path, monkeypatch) -> None:
    store = files.FileStore(tmp_path, 1, WIN)
    for _ in range(4):
        store.mark_done(1)
        store.open_round()
    listed: list[Path] = []
    real = files.round_ids
    monkeypatch.setattr(files, "round_ids", lambda data_dir: listed.append(data_dir) or real(data_dir))
    assert [r.round for r in store.rounds(limit=2)] == [5, 4]
    assert [r.round for r in store.rounds(limit=10, before=3)] == [2, 1]
    assert listed == []  # a listing of rounds/ per request: O(rounds)


@pytest.mark.parametrize("freshness", [0.0, 3600.0], ids=["looked at again", "as last looked at"])
def test_the_edges_agency_check_takes_ids_of_a_round_another_worker_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, freshness: float
) -> None:
    # known_agencies may answer from the round this process looked at last (no stat per
    # request); the edge then asks afresh for an id outside it, so a round opened elsewhere
    # with more agencies takes its new ids at once, and chunks go to the new round.
    import asyncio

    from app.deps import round_agencies

    monkeypatch.setattr(files, "EDGE_FRESHNESS", freshness)
    here = FileStore(tmp_path / "data", agencies=2, winning_number=7574)
    assert here.known_agencies(None) == 2
    elsewhere = FileStore(tmp_path / "data", agencies=2, winning_number=7574)
    for agency in (1, 2):
        elsewhere.append_chunk(Chunk.build(agency, b"%d,Ana,Gomez,1,2000-01-01,1\n" % agency, 1))
        elsewhere.mark_done(agency)
    elsewhere.open_round(agencies=5)
    # as last looked at: round 1's 2; looked at again: round 2, not read yet here (None: ask)
    assert here.known_agencies(None) == (2 if freshness else None)
    assert asyncio.run(round_agencies(here, None, 5)) == 5
    assert here.append_chunk(Chunk.build(5, b"5,Ana,Gomez,1,2000-01-01,1\n", 1)).stored == 1
    assert (here.current_round(), here.known_agencies(None)) == (2, 5)
    here.close()
    elsewhere.close()


def test_chunks_handed_over_while_the_committer_waits_for_the_lock_ride_its_turn(tmp_path, monkeypatch):
    """Another worker holds the round's lock; this worker's committer has taken one chunk and
    waits for it. Two more chunks handed over meanwhile are committed in the same turn, once the
    lock is free: one commit of three chunks, not a second lock turn for two (issue 22)."""
    from app.store.lock import ProcessLock

    s = FileStore(tmp_path, 3, WIN, lock_timeout=10)
    s.append_chunk(chunk(1, 1, "setup"))
    commits: list[list[str]] = []
    real_commit = RoundFiles._commit

    def recorded(self, batch, made):
        commits.append([t.item.rows[0][1] for t in batch])  # each chunk's first name: its tag
        return real_commit(self, batch, made)

    monkeypatch.setattr(RoundFiles, "_commit", recorded)
    other_worker = ProcessLock(str(s._round(None).dir / files.LOCK), 10)
    other_worker.acquire()
    threads = [threading.Thread(target=s.append_chunk, args=(chunk(n, 1, tag),)) for n, tag in ((1, "a"), (2, "b"))]
    try:
        with s._committer.paused():
            threads[0].start()
            until(lambda: s._committer.queued() == 1)
        until(lambda: s._committer.queued() == 0)  # taken: the committer now waits for the lock
        threads[1].start()
        late = threading.Thread(target=s.append_chunk, args=(chunk(3, 1, "c"),))
        late.start()
        threads.append(late)
        until(lambda: s._committer.queued() == 2)
    finally:
        other_worker.release(close=True)
    for thread in threads:
        thread.join(10)
    assert [sorted(tags) for tags in commits] == [["a0", "b0", "c0"]]
    assert s.status().bets == 4
    s.close()


def test_chunks_that_join_a_turn_but_name_a_past_round_are_answered_in_that_rounds_turn(tmp_path, monkeypatch):
    """While the committer waits for round 2's lock, two chunks naming round 1 (drawn) join its
    batch: a retry of a chunk stored there, and a new one. Round 2's chunk is committed in its
    turn; then round 1's two in round 1's own turn: the retry replayed (the leaf it got first),
    the new one refused naming the current round. Nothing reaches round 2 but its own chunk."""
    from app.rounds import RoundError
    from app.store import StoreError
    from app.store.lock import ProcessLock

    s = FileStore(tmp_path, 1, WIN, lock_timeout=10)
    first = s.append_chunk(chunk(1, 2, "x", key="x"))
    s.mark_done(1)  # round 1 drawn (one agency)
    assert s.open_round().round == 2
    commits: list[tuple[int, list[str]]] = []
    real_commit = RoundFiles._commit

    def recorded(self, batch, made):
        commits.append((self.round_id, [t.item.rows[0][1] for t in batch]))
        return real_commit(self, batch, made)

    monkeypatch.setattr(RoundFiles, "_commit", recorded)
    answers: dict[str, object] = {}

    def send(tag: str, c: Chunk, round: int | None) -> threading.Thread:
        def run() -> None:
            try:
                answers[tag] = s.append_chunk(c, round=round)
            except (StoreError, RoundError) as error:
                answers[tag] = error

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    other_worker = ProcessLock(str(s._round(2).dir / files.LOCK), 10)
    other_worker.acquire()
    try:
        with s._committer.paused():
            threads = [send("a", chunk(1, 1, "a", key="a"), None)]
            until(lambda: s._committer.queued() == 1)
        until(lambda: s._committer.queued() == 0)  # taken: the committer waits for round 2's lock
        threads.append(send("retry", chunk(1, 2, "x", key="x"), 1))
        threads.append(send("new", chunk(1, 1, "n", key="n"), 1))
        until(lambda: s._committer.queued() == 2)
    finally:
        other_worker.release(close=True)
    for thread in threads:
        thread.join(10)
    assert commits == [(2, ["a0"]), (1, ["x0", "n0"])]
    stored = answers["a"]
    assert isinstance(stored, ChunkReceipt) and (stored.stored, stored.replayed) == (1, False)
    retry = answers["retry"]
    assert isinstance(retry, ChunkReceipt) and (retry.stored, retry.replayed) == (2, True)
    assert retry.log_index == first.log_index is not None
    refused = answers["new"]
    assert isinstance(refused, RoundError) and "2" in str(refused)  # names the current round
    assert (s.status(round=1).bets, s.status(round=2).bets) == (2, 1)
    s.close()
