"""SIGKILL random gunicorn workers, again and again, while five agencies upload: in chunks of
250 bets, and one bet per request (40 kills).

Real gunicorn (3 workers), five uploader processes (`python -m client run`, which retry
with backoff), and a killer that SIGKILLs a random current worker each time the stored
count passes the next mark (read from /status), and once more when the first agency says
done. The kills follow what the server stored, not the clock, so however fast or slow the
uploads run, every kill lands while the uploaders run. Gunicorn respawns each worker; a
worker killed between its bets.csv write and its ledger line leaves a torn tail that the
next worker to take the lock cuts off. Afterwards no bet may be lost or stored twice,
bets.csv must parse end to end, and the draw must have happened once with the right winners.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from app.domain import WINNING_NUMBER
from client.generate import generate
from devtools.server import Server
from tests.faults.support import (
    SORTEO,
    check_bets_file,
    finish,
    run_uploaders,
    winners_in_file_order,
    winners_of,
)
from tests.figures import lost_and_duplicated, record
from tests.helpers import expected_rows, exported_rows, round_file, stored_rows
from tests.postgres_db import fresh_database
from tests.support.waits import wait_for_bets

# Long: `make test-long` runs it (CI runs both); `make faults` runs every fault test.
pytestmark = [pytest.mark.faults, pytest.mark.long]

AGENCIES = 5
BETS = 20_000  # per agency: 80 chunks of 250 each, one at a time
UPLOAD_KILLS = 20  # one each time the stored count passes another 1/21 of all the bets
SEED = 20_261_126  # deterministic victims; when they die follows the stored count
FIGURE = "worker SIGKILLs during upload and done"
SMALL_BETS = 2_000  # per agency, one bet per request: 10,000 requests
SMALL_KILLS = 40
SMALL_FIGURE = "worker SIGKILLs during one-bet requests"


class Killer(threading.Thread):
    """Kills a random current worker at each of ``marks`` marks of the stored count (of
    ``total``), then at the first done."""

    def __init__(self, server: Server, rng: random.Random, total: int = AGENCIES * BETS, marks: int = UPLOAD_KILLS):
        super().__init__(name="killer", daemon=True)
        self.server, self.rng = server, rng
        self.total, self.marks = total, marks
        self.kills: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for mark in range(1, self.marks + 1):
                wait_for_bets(self.server.url, self.total * mark // (self.marks + 1), timeout=180)
                self.kill_one()
            self.wait_for_log("action: agencia_finalizada", timeout=180)  # the done calls have begun
            self.kill_one()
        except BaseException as error:  # noqa: BLE001 - the test reports it
            self.error = error

    def kill_one(self) -> None:
        """SIGKILL one live worker; retried until one dies by our hand (not already dying)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = sorted(set(self.server.worker_pids()) - set(self.kills))
            if pids:
                victim = self.rng.choice(pids)
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    continue  # it died on its own meanwhile: not our kill
                self.kills.append(victim)
                return
            time.sleep(0.02)  # every worker is being respawned right now
        raise TimeoutError("no live worker to kill for 60 s")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.server.log():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not logged after {timeout}s")
            time.sleep(0.02)


def _round_with_kills(
    files: dict[int, Path],
    data_dir: Path,
    total: int,
    marks: int,
    uploads: tuple[str, ...],
    env: dict[str, str] | None = None,
):
    """A round of the five agencies against 3 workers while the killer kills: the server, the
    kills and the uploaders' results."""
    server = Server(data_dir, workers=3, agencies=AGENCIES, env=env).start()
    killer = Killer(server, random.Random(SEED), total=total, marks=marks)
    try:
        procs = run_uploaders(server.url, files, *uploads)
        killer.start()
        killer.join(400)
        results = finish(procs, timeout=180)
    finally:
        server.stop()
    assert killer.error is None, repr(killer.error)
    assert not killer.is_alive()
    return server, killer.kills, results


def _check_round(
    figure: str, server: Server, kills: list[int], marks: int, results, expected: Counter, stored: Counter
):
    """The figures recorded, then: every uploader done, nothing lost or twice, one draw, no 5xx."""
    log = server.log()
    lost, duplicated = lost_and_duplicated(expected, stored)
    # The uploaders log every retry with its reason: a 5xx would show as "motivo: HTTP 5..".
    errors_5xx = sum(err.count("motivo: HTTP 5") for _, err, _ in results.values())
    answers_5xx = [line for _, err, _ in results.values() for line in err.splitlines() if "motivo: HTTP 5" in line]
    retries = sum(err.count("action: reintento | result: in_progress | intento:") for _, err, _ in results.values())
    record(
        figure,
        faults=len(kills),
        errors_5xx=errors_5xx,
        lost=lost,
        duplicated=duplicated,
        retries=retries,
        torn_tails_repaired=log.count("action: reparacion"),
    )
    assert len(kills) == marks + 1, f"{len(kills)} kills"
    for agency, (_, err, code) in results.items():
        assert code == 0, f"uploader {agency} exited {code} after {len(kills)} kills:\n{err[-3000:]}"
    assert (lost, duplicated) == (0, 0), f"{lost} bets lost and {duplicated} duplicated after {len(kills)} worker kills"
    assert stored == expected
    assert log.count(SORTEO) == 1, f"the draw was logged {log.count(SORTEO)} times"
    assert errors_5xx == 0, (
        "\n".join(answers_5xx[:5])
        + "\n"
        + "\n".join(line for line in log.splitlines() if "detalle:" in line or "Traceback" in line)
    )
    assert log.count("was sent SIGKILL") == len(kills)  # gunicorn saw each kill and respawned the worker


@pytest.mark.parametrize(
    ("figure", "bets", "marks", "uploads"),
    [
        # Small chunks, one in flight: many requests for the kills to land in.
        (FIGURE, BETS, UPLOAD_KILLS, ("--batch-size", "250", "--concurrency", "1")),
        # A ticket sold is a request (issue 22): one bet per POST, several in flight per agency,
        # so kills land among many requests queued for one group commit of the worker.
        (SMALL_FIGURE, SMALL_BETS, SMALL_KILLS, ("--batch-size", "1", "--concurrency", "8")),
    ],
    ids=["chunks-of-250", "one-bet-requests"],
)
def test_sigkill_random_workers_while_five_agencies_upload(
    tmp_path: Path, figure: str, bets: int, marks: int, uploads: tuple[str, ...]
) -> None:
    record(figure)  # the row shows, with the outcome, even if the test fails before measuring
    files = dict(enumerate(generate(tmp_path / "in", agencies=AGENCIES, bets=bets, seed=11), 1))
    server, kills, results = _round_with_kills(files, tmp_path / "data", AGENCIES * bets, marks, uploads)
    expected, stored = expected_rows(files), stored_rows(server.data_dir)
    _check_round(figure, server, kills, marks, results, expected, stored)
    assert check_bets_file(round_file(server.data_dir, "bets.csv")) == AGENCIES * bets
    in_file, sent = winners_in_file_order(server.data_dir), winners_of(expected)
    for agency, (out, _, _) in results.items():
        winners = json.loads(out)["winners"]
        assert winners == in_file.get(agency, [])
        assert Counter(winners) == sent.get(agency, Counter())


def test_sigkill_random_workers_while_five_agencies_upload_on_postgres(tmp_path: Path) -> None:
    """The same on PostgreSQL, where a worker's chunks are stored in batches (app/store/pg_chunks.py):
    a worker killed mid-batch leaves nothing of it, and every uploader's retry is answered once."""
    figure = FIGURE + " (PostgreSQL)"
    record(figure)
    files = dict(enumerate(generate(tmp_path / "in", agencies=AGENCIES, bets=BETS, seed=11), 1))
    uploads = ("--batch-size", "250", "--concurrency", "1")
    with fresh_database("lottery_kills") as url:
        server, kills, results = _round_with_kills(
            files, tmp_path / "data", AGENCIES * BETS, UPLOAD_KILLS, uploads, {"LOTTERY_DATABASE_URL": url}
        )
        export = tmp_path / "bets.csv"
        expected, stored = expected_rows(files), exported_rows(url, export)
    _check_round(figure, server, kills, UPLOAD_KILLS, results, expected, stored)
    in_order: dict[int, list[str]] = {}  # each agency's winners in stored order, from the export
    for agency, *_, document, _, number in csv.reader(export.open(newline="")):
        if int(number) == WINNING_NUMBER:
            in_order.setdefault(int(agency), []).append(document)
    sent = winners_of(expected)
    for agency, (out, _, _) in results.items():
        winners = json.loads(out)["winners"]
        assert winners == in_order.get(agency, [])
        assert Counter(winners) == sent.get(agency, Counter())
