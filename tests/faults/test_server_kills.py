"""SIGKILL the whole server (master and workers) mid-upload and mid-draw, then start it again.

A real SIGKILL rarely lands between a chunk's bets.csv write and its ledger line (the
commit), so after killing the server the tests also craft that state by hand: a torn tail
on bets.csv and half a ledger line, exactly what a writer killed mid-append leaves. A
crafted state is not an injected fault: the figures count it as ``crafted_states``.
A new server on the same data dir must repair it before serving, the uploaders must finish
with nothing lost or doubled, and the draw must happen exactly once with the right winners.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from client.generate import generate
from devtools.server import Server
from tests.faults.support import (
    SORTEO,
    Unexpected5xx,
    check_bets_file,
    digest,
    expected_winners,
    finish,
    ledger_end,
    run_uploaders,
    wait_workers_loaded,
    winners_in_file_order,
)
from tests.figures import lost_and_duplicated, record
from tests.helpers import expected_rows, round_file, stored_rows
from tests.support.waits import wait_for_bets

# Long: `make test-long` runs it (CI runs both); `make faults` runs every fault test.
pytestmark = [pytest.mark.faults, pytest.mark.long]

AGENCIES = 5
# What a writer killed mid-append leaves: whole rows past the committed end, then half a row,
# and half of the ledger line that would have committed them. None of these bets were sent.
TORN_BETS = b"3,Torn,Tail,99999901,1990-01-01,7574\n3,Torn,Tail,99999902,1990-01-01,12\n3,Torn,Ta"
MID_UPLOAD_BETS = 40_000  # per agency
TORN_LEDGER = b'{"a":3,"n":3,"h":"0f3c","k":"torn-key","end":'


def test_sigkill_whole_server_mid_upload_then_restart_repairs_the_tail(tmp_path: Path) -> None:
    figure = "server SIGKILL mid-upload, torn tail crafted, restart"
    record(figure)  # the row shows, with the outcome, even if the test fails before measuring
    files = dict(enumerate(generate(tmp_path / "in", agencies=AGENCIES, bets=MID_UPLOAD_BETS, seed=21), 1))
    data = tmp_path / "data"
    first = Server(data, workers=3, agencies=AGENCIES, log_path=tmp_path / "first.log").start()
    # Enough retries to outlast the time the server is down (each waits up to 5 s).
    procs = run_uploaders(first.url, files, "--batch-size", "500", "--concurrency", "2", "--retries", "30")
    try:
        # Killed once 30,000 of the 200,000 bets are stored (observed): the uploads are mid-way.
        wait_for_bets(first.url, 30_000)
        first.stop(signal.SIGKILL)  # master and workers at once, mid-upload

        committed = ledger_end(data)
        committed_digest = _prefix_digest(round_file(data, "bets.csv"), committed)
        with open(round_file(data, "bets.csv"), "ab") as f:
            f.write(TORN_BETS)
        with open(round_file(data, "ledger.jsonl"), "ab") as f:
            f.write(TORN_LEDGER)

        # Same port: the uploaders, still retrying, find the new server where the old one was.
        second = Server(data, workers=3, agencies=AGENCIES, port=first.port, log_path=tmp_path / "second.log").start()
        try:
            wait_workers_loaded(second)
            repaired = "action: reparacion | result: success" in second.log()
            committed_kept = _prefix_digest(round_file(data, "bets.csv"), committed) == committed_digest
            results = finish(procs, timeout=120)
            # Run again after the round: each skips everything stored and prints the same winners.
            again = finish(run_uploaders(second.url, files, "--batch-size", "700"), timeout=60)
        finally:
            second.stop()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    expected, stored = expected_rows(files), stored_rows(data)
    lost, duplicated = lost_and_duplicated(expected, stored)
    record(
        figure,
        faults=1,  # the SIGKILL; the torn tail is crafted
        crafted_states=1,
        errors_5xx=_count_5xx(results, again),
        lost=lost,
        duplicated=duplicated,
    )
    assert first.log().count(SORTEO) == 0  # killed before the draw
    assert repaired
    assert committed_kept  # cut back to the commit: what was committed is untouched, byte for byte
    for agency, (_, err, code) in results.items():
        assert code == 0, f"uploader {agency} exited {code}:\n{err[-3000:]}"
        assert "action: reintento" in err  # it met the dead server and retried
    for agency, (out, err, code) in again.items():
        assert code == 0, err
        assert out == results[agency][0]
    assert (lost, duplicated) == (0, 0), f"{lost} bets lost and {duplicated} duplicated"
    assert b"Torn" not in (round_file(data, "bets.csv")).read_bytes()
    assert b"torn-key" not in (round_file(data, "ledger.jsonl")).read_bytes()
    assert check_bets_file(round_file(data, "bets.csv")) == AGENCIES * MID_UPLOAD_BETS
    assert (round_file(data, "bets.csv")).stat().st_size == ledger_end(data)

    assert first.log().count(SORTEO) + second.log().count(SORTEO) == 1
    in_file = winners_in_file_order(data)
    for agency, (out, _, _) in results.items():
        winners = json.loads(out)["winners"]
        assert winners == in_file.get(agency, [])
        assert Counter(winners) == expected_winners(files)[agency]


def test_crash_between_last_done_and_draw_draws_exactly_once_on_restart(tmp_path: Path) -> None:
    """Every agency is done but winners.json is missing: the next winners query draws, once."""
    figure = "server SIGKILL, done-set without draw crafted, restart"
    record(figure)
    files = dict(enumerate(generate(tmp_path / "in", agencies=AGENCIES, bets=4_000, seed=31), 1))
    data = tmp_path / "data"
    first = Server(data, workers=3, agencies=AGENCIES, log_path=tmp_path / "first.log").start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            for agency, path in files.items():
                r = client.post(
                    f"/agencies/{agency}/bets",
                    content=path.read_bytes(),
                    headers={"Content-Type": "text/csv", "Idempotency-Key": f"file-{agency}"},
                )
                assert r.status_code == 201, r.text
            for agency in range(1, AGENCIES):
                assert client.post(f"/agencies/{agency}/done").json()["drawn"] is False
    finally:
        first.stop(signal.SIGKILL)
    # The crash: the last agency's line was appended to done.log (as the store does it), and the
    # process died before it could write winners.json.
    with open(round_file(data, "done.log"), "ab") as f:
        f.write(b"%d\n" % AGENCIES)
    assert not (round_file(data, "winners.json")).exists()

    second = Server(data, workers=3, agencies=AGENCIES, log_path=tmp_path / "second.log").start()
    try:
        wait_workers_loaded(second)
        assert second.log().count(SORTEO) == 0  # starting does not draw; the first query does
        answers: list[tuple[int, int, object]] = []
        queries = [a for a in files for _ in range(4)]  # 20 threads, 4 per agency, all at once
        barrier = threading.Barrier(len(queries))

        def query(agency: int) -> None:
            with httpx.Client(base_url=second.url, timeout=60) as client:
                barrier.wait(30)
                r = client.get(f"/agencies/{agency}/winners")
                answers.append((agency, r.status_code, r.json()))

        threads = [threading.Thread(target=query, args=(a,)) for a in queries]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        status = httpx.get(second.url + "/status").json()
    finally:
        second.stop()

    errors_5xx = sum(1 for _, code, _ in answers if code >= 500)
    lost, duplicated = lost_and_duplicated(expected_rows(files), stored_rows(data))
    record(figure, faults=1, crafted_states=1, errors_5xx=errors_5xx, lost=lost, duplicated=duplicated)
    assert len(answers) == len(queries)
    assert (lost, duplicated) == (0, 0), f"{lost} bets lost and {duplicated} duplicated"
    in_file = winners_in_file_order(data)
    expected = expected_winners(files)
    for agency, code, body in answers:
        assert code == 200, body
        assert body == {"agency": agency, "winners": in_file.get(agency, [])}
        assert Counter(body["winners"]) == expected[agency]
    assert second.log().count(SORTEO) == 1, f"drew {second.log().count(SORTEO)} times"
    assert status == {
        "expected": AGENCIES,
        "done_count": AGENCIES,
        "drawn": True,
        "bets": AGENCIES * 4_000,
    }
    assert json.loads((round_file(data, "winners.json")).read_bytes())["bets"] == AGENCIES * 4_000


def test_bets_without_ledger_is_refused_with_503_while_running(tmp_path: Path) -> None:
    """bets.csv without ledger.jsonl cannot say what is committed: 503, and bets.csv is left alone."""
    figure = "ledger.jsonl deleted under a running server"
    record(figure)
    data = tmp_path / "data"
    five = Unexpected5xx()
    bets = "".join(f"Ana,Gómez,{10_000_000 + i},1990-01-01,{i}\n" for i in range(100))
    sent = Counter(
        (agency, "Ana", "Gómez", str(10_000_000 + i), "1990-01-01", i) for agency in (1, 2) for i in range(100)
    )
    with (
        Server(data, workers=2, agencies=2) as server,
        httpx.Client(base_url=server.url, timeout=30, event_hooks={"response": [five]}) as client,
    ):
        first = client.post("/agencies/1/bets", content=bets, headers={"Content-Type": "text/csv"})
        before = digest(round_file(data, "bets.csv"))
        os.rename(round_file(data, "ledger.jsonl"), tmp_path / "ledger.jsonl.moved")  # lost outside the service

        with five.provoked():
            refused = client.post("/agencies/2/bets", content=bets, headers={"Content-Type": "text/csv"})
            status_refused = client.get("/status")
        after_refusal = digest(round_file(data, "bets.csv"))
        ledger_made_up = (round_file(data, "ledger.jsonl")).exists()

        os.rename(tmp_path / "ledger.jsonl.moved", round_file(data, "ledger.jsonl"))  # the operator puts it back
        second = client.post("/agencies/2/bets", content=bets, headers={"Content-Type": "text/csv"})
        status = client.get("/status").json()
    lost, duplicated = lost_and_duplicated(sent, stored_rows(data))
    record(figure, faults=1, errors_5xx=five.count, lost=lost, duplicated=duplicated)

    assert first.status_code == 201, first.text
    _assert_no_ledger_problem(refused, data)
    _assert_no_ledger_problem(status_refused, data)
    assert after_refusal == before  # not truncated, not appended to: no guessing
    assert not ledger_made_up  # and no empty ledger made up
    assert second.status_code == 201, second.text
    assert status["bets"] == 200
    assert five.count == 0
    assert (lost, duplicated) == (0, 0), f"{lost} bets lost and {duplicated} duplicated"


def test_server_started_on_bets_without_ledger_answers_503_instead_of_dying(tmp_path: Path) -> None:
    """A worker that boots on such a data dir serves 503, and the server stays up.

    A regression test for a bug this suite found: FileStore.__init__ used to raise
    StorageUnavailable from its first recovery, so the worker failed to boot (exit code 3)
    and gunicorn's master shut the whole server down. The files are left alone, and the
    server says why, per request. The data dir is crafted (no fault injected): no figure.
    """
    data = tmp_path / "data"
    data.mkdir()
    (round_file(data, "bets.csv")).write_bytes(b"1,Ana,G\xc3\xb3mez,10000000,1990-01-01,5\n")
    before = digest(round_file(data, "bets.csv"))
    server = Server(data, workers=2, agencies=2)
    try:
        try:
            server.start(timeout=8)
        except TimeoutError:
            pass  # /health need not say 200 on such a dir; the requests below tell
        except RuntimeError as error:
            pytest.fail(
                f"gunicorn exited instead of answering 503 (bets.csv without ledger.jsonl):\n{str(error)[-1500:]}"
            )
        assert server.proc is not None and server.proc.poll() is None, "gunicorn exited"
        r = httpx.post(
            server.url + "/agencies/1/bets", content="Ana,Gómez,1,1990-01-01,5\n", headers={"Content-Type": "text/csv"}
        )
        _assert_no_ledger_problem(r, data)
        _assert_no_ledger_problem(httpx.get(server.url + "/status"), data)
    finally:
        server.stop()
    assert digest(round_file(data, "bets.csv")) == before
    assert not (round_file(data, "ledger.jsonl")).exists()


def _assert_no_ledger_problem(r: httpx.Response, data: Path) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "retry-after" in r.headers
    body = r.json()
    assert body["status"] == 503 and body["title"] == "Storage unavailable"
    assert "bets.csv has bets but no ledger.jsonl" in body["detail"], body  # says what is wrong, and where
    assert str(data) in body["detail"], body


def _prefix_digest(path: Path, size: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(size)).hexdigest()


def _count_5xx(*runs: dict[int, tuple[str, str, int]]) -> int:
    """5xx the uploaders met (each is logged as a retry with its reason)."""
    return sum(err.count("motivo: HTTP 5") for run in runs for _, err, _ in run.values())
