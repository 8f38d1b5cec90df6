"""A whole round against real gunicorn (3 workers) on loopback, with the course's dataset.

Five agencies upload at once from five threads, each with its own connection pool, in
chunks that alternate JSON and CSV bodies, so chunks of one agency land on different
workers and interleave with the other agencies' chunks.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from app.domain import WINNING_NUMBER as WINNING
from devtools.server import Server
from tests.conftest import DATASET_COUNTS
from tests.helpers import read_agency_file, stored_rows, without_log
from tests.support.server import refused_start

CHUNK = 1000


@pytest.fixture
def server(tmp_path: Path):
    with Server(tmp_path / "data", workers=3, agencies=5) as running:
        yield running


def _json_body(bets):
    return {
        "bets": [
            dict(zip(("first_name", "last_name", "document", "birthdate", "number"), b, strict=False)) for b in bets
        ]
    }


def _csv_body(bets) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(bets)
    return out.getvalue().encode()


def _upload(url: str, agency: int, bets, errors: list) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for i, start in enumerate(range(0, len(bets), CHUNK)):
            chunk = bets[start : start + CHUNK]
            headers = {"Idempotency-Key": f"agency-{agency}-chunk-{i}"}
            if i % 2:
                r = client.post(
                    f"/agencies/{agency}/bets",
                    content=_csv_body(chunk),
                    headers={**headers, "Content-Type": "text/csv"},
                )
            else:
                r = client.post(f"/agencies/{agency}/bets", json=_json_body(chunk), headers=headers)
            answer = {k: v for k, v in r.json().items() if k != "log"}  # the receipt: test_transparency_log.py
            if r.status_code != 201 or answer != {"agency": agency, "stored": len(chunk)}:
                errors.append((agency, i, r.status_code, r.text))


def test_five_agencies_one_round(server: Server, dataset: Path) -> None:
    files = {a: read_agency_file(dataset / f"agency-{a}.csv") for a in range(1, 6)}
    assert {a: len(b) for a, b in files.items()} == DATASET_COUNTS
    url = server.url

    early = httpx.get(f"{url}/agencies/1/winners")
    assert early.status_code == 425
    assert early.headers["retry-after"] == "1"
    assert early.headers["content-type"] == "application/problem+json"

    errors: list = []
    threads = [threading.Thread(target=_upload, args=(url, a, files[a], errors)) for a in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []

    # A retried chunk (same Idempotency-Key, sent as CSV this time) is answered, not stored.
    replay = httpx.post(
        f"{url}/agencies/2/bets",
        content=_csv_body(files[2][:CHUNK]),
        headers={"Idempotency-Key": "agency-2-chunk-0", "Content-Type": "text/csv"},
    )
    assert (replay.status_code, without_log(replay.json())) == (200, {"agency": 2, "stored": CHUNK})
    assert replay.headers["idempotent-replayed"] == "true"

    # A chunk with one bad bet among good ones: 422 naming it, and nothing of it stored.
    bad = [("Ana", "Gómez", "12345678", "1990-01-01", "1"), ("Luis", "Pérez", "12x", "1990-01-01", "2")]
    rejected = httpx.post(f"{url}/agencies/3/bets", content=_csv_body(bad), headers={"Content-Type": "text/csv"})
    assert rejected.status_code == 422
    assert rejected.json()["errors"] == [
        {"index": 1, "line": 2, "field": "document", "message": 'must be a string of 1 to 10 digits, e.g. "30904465"'}
    ]

    # All five say done at the same moment; exactly one of them performs the draw.
    answers: list[dict] = []
    barrier = threading.Barrier(5)

    def done(agency: int) -> None:
        barrier.wait()
        answers.append(httpx.post(f"{url}/agencies/{agency}/done", timeout=60).json())

    threads = [threading.Thread(target=done, args=(a,)) for a in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(a["done"] for a in answers) == [1, 2, 3, 4, 5]
    assert [a["drawn"] for a in answers if a["done"] == 5] == [True]

    late = httpx.post(f"{url}/agencies/1/bets", json=_json_body(files[1][:1]))
    assert late.status_code == 409

    expected_rows = Counter((a, *bet) for a, bets in files.items() for bet in bets)
    assert stored_rows(server.data_dir) == expected_rows
    assert sum(expected_rows.values()) == 78_697

    for agency, bets in files.items():
        r = httpx.get(f"{url}/agencies/{agency}/winners")
        assert r.status_code == 200
        assert r.json() == {"agency": agency, "winners": [b[2] for b in bets if b[4] == WINNING]}
    counts = [len(httpx.get(f"{url}/agencies/{a}/winners").json()["winners"]) for a in files]
    assert counts == [2, 3, 3, 2, 0]

    status = httpx.get(f"{url}/status").json()
    assert status == {"expected": 5, "done_count": 5, "drawn": True, "bets": 78_697}
    assert server.log().count("action: sorteo | result: success") == 1


def test_settings_errors_stop_the_server_with_one_line(tmp_path: Path) -> None:
    lines, log = refused_start(tmp_path / "data", {"LOTTERY_AGENCIES": "zero"}, workers=2)
    assert lines == [
        "lottery: invalid setting: LOTTERY_AGENCIES='zero': Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
    assert "Traceback" not in log


def test_gunicorn_knobs_still_work(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=4) as running:
        assert len(running.worker_pids()) == 4
        assert httpx.get(running.url + "/health").json() == {"status": "ok"}
