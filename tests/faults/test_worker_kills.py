"""SIGKILL random gunicorn workers, again and again, while five agencies upload.

Real gunicorn (3 workers), five uploader processes (`python -m client run`, which retry
with backoff), and a killer thread that SIGKILLs a random current worker at random moments.
Gunicorn respawns each one; a worker killed between its bets.csv write and its ledger line
leaves a torn tail that the next worker to take the lock cuts off. Afterwards no bet may be
lost or stored twice, bets.csv must parse end to end, and the draw must have happened once
with the right winners.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from client.generate import generate
from devtools.server import Server
from tests.faults.support import (
    SORTEO,
    check_bets_file,
    finish,
    run_uploaders,
    wait_for_bets,
    winners_in_file_order,
    winners_of,
)
from tests.figures import lost_and_duplicated, record
from tests.helpers import expected_rows, stored_rows

pytestmark = pytest.mark.faults

AGENCIES = 5
BETS = 80_000  # per agency: 320 chunks of 250 each, one at a time: long enough for the kills
KILLS = 40  # kills aimed for, at random moments 30-200 ms apart, once the uploads are under way
MIN_KILLS = 20  # kills that must land while the uploaders run
SEED = 20_261_126  # deterministic choices (victims, delays); the timing itself is real


class Killer(threading.Thread):
    """SIGKILLs a random current worker every 30-200 ms, ``KILLS`` times or until told to stop.

    The number is bounded because each respawned worker imports the app again: killing
    without end on a 2-core machine would only measure how fast gunicorn can boot workers.
    """

    def __init__(self, server: Server, rng: random.Random):
        super().__init__(name="killer", daemon=True)
        self.server, self.rng = server, rng
        self.stop = threading.Event()
        self.kills: list[int] = []

    def run(self) -> None:
        while len(self.kills) < KILLS and not self.stop.wait(self.rng.uniform(0.03, 0.2)):
            pids = sorted(self.server.worker_pids())
            if not pids:
                continue  # all of them are being respawned right now
            victim = self.rng.choice(pids)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue  # it died on its own meanwhile: not our kill
            self.kills.append(victim)


def test_sigkill_random_workers_while_five_agencies_upload(tmp_path: Path) -> None:
    files = dict(enumerate(generate(tmp_path / "in", agencies=AGENCIES, bets=BETS, seed=11), 1))
    server = Server(tmp_path / "data", workers=3, agencies=AGENCIES).start()
    killer = Killer(server, random.Random(SEED))
    try:
        # Small chunks, one in flight: the uploads must outlast MIN_KILLS kills however fast they get.
        procs = run_uploaders(server.url, files, "--batch-size", "250", "--concurrency", "1")
        wait_for_bets(server.url, 500)  # the five are under way: kill mid-upload, not at start-up
        killer.start()
        # Keep killing through the uploads, the done calls, the draw and the winners queries.
        deadline = time.monotonic() + 180
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        killer.stop.set()
        killer.join(10)
        results = finish(procs, timeout=180)
    finally:
        killer.stop.set()
        server.stop()
    log = server.log()

    kills = len(killer.kills)
    for agency, (_, err, code) in results.items():
        assert code == 0, f"uploader {agency} exited {code} after {kills} kills:\n{err[-3000:]}"

    expected, stored = expected_rows(files), stored_rows(server.data_dir)
    lost, duplicated = lost_and_duplicated(expected, stored)
    # The uploaders log every retry with its reason: a 5xx would show as "motivo: HTTP 5..".
    errors_5xx = sum(err.count("motivo: HTTP 5") for _, err, _ in results.values())
    retries = sum(err.count("action: reintento") for _, err, _ in results.values())
    record(
        "worker SIGKILLs during upload",
        faults=kills,
        errors_5xx=errors_5xx,
        lost=lost,
        duplicated=duplicated,
        retries=retries,
        torn_tails_repaired=log.count("action: reparacion"),
    )
    assert kills >= MIN_KILLS, f"only {kills} workers were killed while the uploaders ran"
    assert (lost, duplicated) == (0, 0), f"{lost} bets lost and {duplicated} duplicated after {kills} worker kills"
    assert stored == expected
    assert check_bets_file(server.data_dir / "bets.csv") == AGENCIES * BETS

    assert log.count(SORTEO) == 1, f"the draw was logged {log.count(SORTEO)} times"
    assert errors_5xx == 0
    assert log.count("was sent SIGKILL") >= MIN_KILLS  # gunicorn saw the kills and respawned the workers
    in_file, sent = winners_in_file_order(server.data_dir), winners_of(expected)
    for agency, (out, _, _) in results.items():
        winners = json.loads(out)["winners"]
        assert winners == in_file.get(agency, [])
        assert Counter(winners) == sent.get(agency, Counter())
