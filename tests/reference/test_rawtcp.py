"""The raw-TCP reference round (reference/rawtcp): end to end on a small generated dataset, plus framing limits."""

from __future__ import annotations

import csv
import json
import random
import socket
import struct
from collections import Counter
from pathlib import Path

import pytest

from app.domain import WINNING_NUMBER as WINNING
from reference.rawtcp import protocol
from reference.rawtcp.agency import iter_batches
from reference.rawtcp.round import dataset_files, run_round
from tests.helpers import round_file

pytestmark = pytest.mark.reference

FIRST = ["Santiago Lionel", "Tiago Nicolás", "María José", "Zoë", "Joaquín", 'Ana "Anita"', "Ñanco"]
LAST = ["Pérez", "Núñez", "Saldaña", "Fornerón", "O'Brien", "Mejía", "Pérez, Gómez"]  # last one needs quotes
SIZES = {1: 300, 2: 250, 3: 200}
WIN_EVERY = {1: 37, 2: 50, 3: 0}  # agency 3 has no winners


def _write_agency(path: Path, agency: int, lines: int, crlf: bool) -> None:
    rng = random.Random(agency)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n" if crlf else "\n")
        for i in range(lines):
            every = WIN_EVERY[agency]
            number = WINNING if every and i % every == 0 else rng.choice((0, 1, 42, 7573, 7575, 9999))
            writer.writerow(
                [
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    str(20_000_000 + agency * 100_000 + i),
                    f"19{rng.randint(40, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    str(number),
                ]
            )


def _read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f) if row]


@pytest.fixture
def small_dataset(tmp_path: Path) -> dict[int, Path]:
    files = {}
    for agency, lines in SIZES.items():
        files[agency] = tmp_path / "dataset" / f"agency-{agency}.csv"
        files[agency].parent.mkdir(exist_ok=True)
        _write_agency(files[agency], agency, lines, crlf=agency != 2)  # the real files use CRLF
    return files


def test_round_stores_every_bet_and_finds_winners(small_dataset: dict[int, Path], tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    result = run_round(small_dataset, data_dir, timeout=30)

    expected = Counter(tuple([str(k), *row]) for k, path in small_dataset.items() for row in _read_rows(path))
    stored = Counter(tuple(row) for row in _read_rows(round_file(data_dir, "bets.csv")))
    assert stored == expected
    assert result["rows"] == sum(SIZES.values())

    winners = {k: [row[2] for row in _read_rows(path) if int(row[4]) == WINNING] for k, path in small_dataset.items()}
    assert result["winners"] == {k: len(docs) for k, docs in winners.items()}
    assert winners[1] and winners[2] and not winners[3]
    drawn = json.loads((round_file(data_dir, "winners.json")).read_text(encoding="utf-8"))["winners"]
    assert {int(k): sorted(v) for k, v in drawn.items()} == {k: sorted(v) for k, v in winners.items()}


def test_round_on_the_course_dataset(dataset: Path, tmp_path: Path) -> None:
    """The real files (CRLF, 78,697 bets); ``dataset`` is the shared fixture of tests/conftest.py."""
    result = run_round(dataset_files(dataset), tmp_path / "server", timeout=120)
    assert result["rows"] == 78_697
    assert result["winners"] == {1: 2, 2: 3, 3: 3, 4: 2, 5: 0}


def test_batches_pack_whole_lines_within_the_frame_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    line = "Santiago Lionel,Pérez,30904465,1999-03-17,2201"
    big.write_text(f"{line}\r\n" * 2000, encoding="utf-8", newline="")
    frames = list(iter_batches(big))
    assert len(frames) > 1
    assert all(f[:1] == protocol.BATCH and len(f) <= protocol.MAX_PAYLOAD for f in frames)
    assert b"".join(f[1:] for f in frames) == f"{line}\n".encode() * 2000


def test_frame_payload_over_8k_is_refused() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(2)
        b.settimeout(2)
        with pytest.raises(ValueError):
            protocol.send_frame(a, protocol.BATCH + b"x" * protocol.MAX_PAYLOAD)
        payload = protocol.BATCH + b"x" * (protocol.MAX_PAYLOAD - 1)  # exactly 8192 bytes is fine
        protocol.send_frame(a, payload)
        assert protocol.recv_frame(b) == payload
        # A header announcing more than 8 kB is rejected before reading the payload.
        a.sendall(struct.pack("!I", protocol.MAX_PAYLOAD + 1))
        with pytest.raises(protocol.ProtocolError):
            protocol.recv_frame(b)
