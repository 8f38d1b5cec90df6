"""50 agencies post small chunks all at once: every chunk lands whole, contiguous, and once.

3 workers, 50 threads (one per agency, each with its own connection pool) released
together, 20 chunks of 5 bets each, alternating JSON and CSV bodies. Afterwards every line
of bets.csv must be one complete 6-field row, each chunk's rows must sit next to each other
in the order sent (no interleaving with another request's rows), and the multiset of rows
must be exactly what was sent.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from devtools.server import Server
from tests.faults.support import check_bets_file, wait_workers_loaded
from tests.figures import lost_and_duplicated, record
from tests.helpers import round_file, stored_rows

pytestmark = pytest.mark.faults

AGENCIES, CHUNKS, PER_CHUNK = 50, 20, 5
# Names that need quoting, accents, apostrophes and outer spaces (trimmed when stored).
FIRST = ["Ana María", " José ", 'Luis "Lucho"', "Zoë, la del medio", "Ñandú"]
LAST = ["O'Connor", "Pérez García", "de la Fuente, Jr.", "Smith", "Ōtsuka"]


def chunk_bets(agency: int, chunk: int) -> list[tuple[str, str, str, str, int]]:
    """Bets whose document encodes where they come from: 9 + agency + chunk + position."""
    return [
        (
            FIRST[(chunk + i) % 5],
            LAST[(agency + i) % 5],
            f"9{agency:02d}{chunk:02d}{i}",
            f"19{50 + (agency + chunk + i) % 50}-0{1 + i}-1{i}",
            (agency * 131 + chunk * 7 + i) % 10_000,
        )
        for i in range(PER_CHUNK)
    ]


def post_all(url: str, agency: int, barrier: threading.Barrier, failures: list) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        barrier.wait(60)
        for chunk in range(CHUNKS):
            bets = chunk_bets(agency, chunk)
            if chunk % 2:
                out = io.StringIO()
                csv.writer(out, lineterminator="\r\n").writerows(bets)
                r = client.post(
                    f"/agencies/{agency}/bets", content=out.getvalue().encode(), headers={"Content-Type": "text/csv"}
                )
            else:
                keys = ("first_name", "last_name", "document", "birthdate", "number")
                r = client.post(
                    f"/agencies/{agency}/bets", json={"bets": [dict(zip(keys, b, strict=False)) for b in bets]}
                )
            if r.status_code != 201:
                failures.append((agency, chunk, r.status_code, r.text))


def test_fifty_agencies_posting_small_chunks_at_once(tmp_path: Path) -> None:
    figure = "50 agencies, small chunks at once"
    record(figure)  # the row shows, with the outcome, even if the test fails before measuring
    data = tmp_path / "data"
    failures: list = []
    with Server(data, workers=3, agencies=AGENCIES) as server:
        wait_workers_loaded(server)
        barrier = threading.Barrier(AGENCIES)
        threads = [
            threading.Thread(target=post_all, args=(server.url, a, barrier, failures)) for a in range(1, AGENCIES + 1)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        still_posting = [t for t in threads if t.is_alive()]
        status = httpx.get(server.url + "/status").json()

    sent = Counter(
        (a, f.strip(), l.strip(), d, b, n)
        for a in range(1, AGENCIES + 1)
        for c in range(CHUNKS)
        for f, l, d, b, n in chunk_bets(a, c)
    )
    stored = stored_rows(data)
    lost, duplicated = lost_and_duplicated(sent, stored)
    errors_5xx = sum(1 for f in failures if f[2] >= 500)
    record(figure, errors_5xx=errors_5xx, lost=lost, duplicated=duplicated)
    assert not still_posting, "some agency was still posting after 120 s"
    assert failures == []
    assert (lost, duplicated) == (0, 0), f"{lost} bets lost and {duplicated} duplicated"
    assert status["bets"] == AGENCIES * CHUNKS * PER_CHUNK
    assert check_bets_file(round_file(data, "bets.csv"), validate=True) == AGENCIES * CHUNKS * PER_CHUNK

    # Where each chunk's rows landed: consecutive lines, in the order sent.
    where: dict[tuple[int, int], list[tuple[int, int]]] = {}
    with open(round_file(data, "bets.csv"), newline="", encoding="utf-8") as f:
        for line, (agency, _, _, document, _, _) in enumerate(csv.reader(f)):
            assert document[1:3] == f"{int(agency):02d}", f"line {line + 1}: document of another agency"
            where.setdefault((int(agency), int(document[3:5])), []).append((line, int(document[5:])))
    assert len(where) == AGENCIES * CHUNKS
    for (agency, chunk), rows in where.items():
        lines = [line for line, _ in rows]
        assert lines == list(range(lines[0], lines[0] + PER_CHUNK)), f"chunk {chunk} of agency {agency} interleaved"
        assert [i for _, i in rows] == list(range(PER_CHUNK)), f"chunk {chunk} of agency {agency} out of order"
