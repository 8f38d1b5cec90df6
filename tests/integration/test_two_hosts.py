"""Several hosts, one round: two gunicorn masters (two "hosts" on two loopback ports, two
workers each) share one PostgreSQL database.

Five uploaders spread their chunks over both hosts (chunk i goes to host i % 2) with the
uploader's headers (Idempotency-Key, Upload-Id, Upload-Offset); `done` reaches both hosts
at the same moment. Then: every bet is stored exactly once (checked on the course's
bets.csv written by `python -m app.export`), one draw across both hosts' logs, and the same
right winners from either host. And when one host is SIGKILLed mid-upload (every uploader
paused after the same chunk, the stored count observed, then the kill), the uploaders move
the dead host's chunks to the other and finish there, without a bet twice.

Needs PostgreSQL: fails when LOTTERY_TEST_DATABASE_URL is set but unusable, skips (saying
why) when it is unset and none answers (tests/postgres_db.py, .ci/postgres.sh).
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from app.domain import WINNING_NUMBER as WINNING
from app.settings import DEFAULT_LOG_ORIGIN
from client.generate import generate
from devtools.server import Server
from tests.helpers import exported_rows, without_log
from tests.postgres_db import fresh_database, require_postgres
from tlog import keyfile

AGENCIES = 5
BETS = 8_000  # per agency
CHUNK = 500  # bets per chunk
CHUNKS = BETS // CHUNK  # per agency
WORKERS = 2  # per host: two hosts of two workers on a two-core machine


@pytest.fixture(scope="module")
def agency_files(tmp_path_factory) -> dict[int, Path]:
    out = tmp_path_factory.mktemp("agencies")
    return dict(enumerate(generate(out, agencies=AGENCIES, bets=BETS, seed=11), 1))


@pytest.fixture
def database():
    require_postgres()
    with fresh_database("lottery_hosts") as url:
        yield url


def start_hosts(tmp_path: Path, url: str) -> list[Server]:
    # One transparency log for the database: every host signs with the same key file.
    key = tmp_path / "log.key"
    if not key.exists():
        keyfile.write_new_key(key, DEFAULT_LOG_ORIGIN)
    hosts = [
        Server(
            tmp_path / f"host-{n}" / "data",
            workers=WORKERS,
            agencies=AGENCIES,
            log_path=tmp_path / f"host-{n}.log",
            env={"LOTTERY_DATABASE_URL": url, "LOTTERY_LOG_KEY_FILE": str(key)},
        )
        for n in (1, 2)
    ]
    for host in hosts:
        host.data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        for host in hosts:
            host.start()
    except BaseException:
        for host in hosts:
            host.stop()
        raise
    return hosts


def read_lines(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [line for line in f.read().splitlines(keepends=True) if line.strip()]


def file_bets(path: Path) -> list[tuple[str, str, str, str, int]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(a, b, c, d, int(e)) for a, b, c, d, e in csv.reader(f) if a]


class Uploader(threading.Thread):
    """One agency's uploader that sends chunk i to host i % 2, and a failed chunk to the other host."""

    def __init__(self, agency: int, path: Path, urls: list[str], pause_after: int | None = None):
        super().__init__(name=f"uploader-{agency}")
        self.agency, self.urls = agency, urls
        self.lines = read_lines(path)
        self.upload_id = f"agency-{agency}-file"
        self.statuses: Counter = Counter()
        self.moved = 0  # chunks that had to go to the other host
        self.error: BaseException | None = None
        # After ``pause_after`` chunks: set ``paused`` and wait for ``resume`` (the test kills meanwhile).
        self.pause_after, self.paused, self.resume = pause_after, threading.Event(), threading.Event()

    def run(self) -> None:
        clients = [httpx.Client(base_url=url, timeout=30) for url in self.urls]
        try:
            for i, offset in enumerate(range(0, len(self.lines), CHUNK)):
                if i == self.pause_after:
                    self.paused.set()
                    if not self.resume.wait(120):
                        raise TimeoutError("never resumed")
                self.send(clients, i, offset)
        except BaseException as error:  # noqa: BLE001 - the test reports it
            self.error = error
        finally:
            for client in clients:
                client.close()

    def send(self, clients: list[httpx.Client], i: int, offset: int) -> None:
        body = "".join(self.lines[offset : offset + CHUNK]).encode()
        count = body.count(b"\n")
        headers = {
            "Content-Type": "text/csv",
            "Idempotency-Key": f"{self.upload_id}:{offset}+{count}",
            "Upload-Id": self.upload_id,
            "Upload-Offset": str(offset),
        }
        for attempt in range(40):
            host = (i + attempt) % 2  # first the chunk's own host, then the other, in turns
            try:
                r = clients[host].post(f"/agencies/{self.agency}/bets", content=body, headers=headers)
            except httpx.TransportError:
                self.moved += attempt == 0
                time.sleep(0.01 * attempt)
                continue
            self.statuses[r.status_code] += 1
            if r.status_code >= 500:
                time.sleep(0.05 * attempt)
                continue
            assert r.status_code in (200, 201), r.text
            assert without_log(r.json()) == {"agency": self.agency, "stored": count}
            return
        raise AssertionError(f"agency {self.agency}: chunk at {offset} never stored")


def upload_all(files: dict[int, Path], urls: list[str], pause_after=None, while_paused=None) -> list[Uploader]:
    uploaders = [Uploader(agency, path, urls, pause_after) for agency, path in files.items()]
    for u in uploaders:
        u.start()
    if pause_after is not None:
        try:
            for u in uploaders:
                assert u.paused.wait(120), f"agency {u.agency} never reached chunk {pause_after}"
            while_paused()
        finally:
            for u in uploaders:
                u.resume.set()
    for u in uploaders:
        u.join(120)
        assert not u.is_alive()
        assert u.error is None, repr(u.error)
    return uploaders


def expected_rows(files: dict[int, Path]) -> Counter:
    return Counter((a, *bet) for a, path in files.items() for bet in file_bets(path))


def expected_winners(files: dict[int, Path]) -> dict[int, list[str]]:
    return {a: [bet[2] for bet in file_bets(path) if bet[4] == WINNING] for a, path in files.items()}


def draws(hosts: list[Server]) -> int:
    return sum(host.log().count("action: sorteo | result: success") for host in hosts)


def test_two_hosts_one_round(tmp_path, database, agency_files):
    hosts = start_hosts(tmp_path, database)
    try:
        urls = [h.url for h in hosts]
        assert httpx.get(urls[1] + "/agencies/1/winners").status_code == 425
        uploaders = upload_all(agency_files, urls)
        assert all(set(u.statuses) == {201} for u in uploaders)  # nothing failed, nothing replayed
        status = [httpx.get(url + "/status").json() for url in urls]
        assert status[0] == status[1] == {"expected": 5, "done_count": 0, "drawn": False, "bets": AGENCIES * BETS}

        # Every agency says done to both hosts at the same moment: ten requests, one draw.
        barrier = threading.Barrier(2 * AGENCIES)
        answers: list[dict] = []

        def done(url: str, agency: int) -> None:
            barrier.wait()
            answers.append(httpx.post(f"{url}/agencies/{agency}/done", timeout=60).json())

        threads = [threading.Thread(target=done, args=(url, a)) for a in agency_files for url in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == 2 * AGENCIES
        assert max(a["done"] for a in answers) == AGENCIES
        assert any(a["drawn"] for a in answers)
        assert draws(hosts) == 1

        assert exported_rows(database, tmp_path / "bets.csv") == expected_rows(agency_files)
        winners = expected_winners(agency_files)
        assert sum(map(len, winners.values())) > 0
        for agency in agency_files:
            for url in urls:
                r = httpx.get(f"{url}/agencies/{agency}/winners")
                assert r.json() == {"agency": agency, "winners": winners[agency]}
        late = httpx.post(
            urls[0] + "/agencies/1/bets", content=b"Ana,Gomez,1,1990-01-01,1\n", headers={"Content-Type": "text/csv"}
        )
        assert late.status_code == 409
        assert draws(hosts) == 1
    finally:
        for host in hosts:
            host.stop()


@pytest.mark.long  # a fault (a host SIGKILLed), as in tests/faults: `make test-long`
def test_a_host_killed_mid_upload_the_other_finishes(tmp_path, database, agency_files):
    hosts = start_hosts(tmp_path, database)
    pause_after = 6  # chunks 0..5 sent; chunks 6..15 after the kill, the odd ones meant for host 2
    try:
        urls = [h.url for h in hosts]
        killed: dict = {}

        def kill_second_host() -> None:
            # Every uploader is paused after the same chunk: the stored count says so exactly.
            killed["bets_before"] = httpx.get(urls[0] + "/status", timeout=5).json()["bets"]
            killed["pid"] = hosts[1].proc.pid
            hosts[1].stop(signal.SIGKILL)

        uploaders = upload_all(agency_files, urls, pause_after, kill_second_host)
        assert killed["bets_before"] == AGENCIES * pause_after * CHUNK
        with pytest.raises(ProcessLookupError):  # the master is gone (reaped by stop())
            os.kill(killed["pid"], 0)
        with pytest.raises(httpx.ConnectError):  # and nothing answers on its port
            httpx.get(urls[1] + "/health", timeout=5)
        # Each chunk meant for the dead host (odd index) went to the other on its first failure.
        moved_per_agency = len([i for i in range(pause_after, CHUNKS) if i % 2 == 1])
        assert [u.moved for u in uploaders] == [moved_per_agency] * AGENCIES
        assert all(set(u.statuses) == {201} for u in uploaders)  # none stored twice, none replayed
        assert httpx.get(urls[0] + "/status").json()["bets"] == AGENCIES * BETS
        for agency in agency_files:
            assert httpx.post(f"{urls[0]}/agencies/{agency}/done").status_code == 200
        assert exported_rows(database, tmp_path / "bets.csv") == expected_rows(agency_files)
        winners = expected_winners(agency_files)
        for agency in agency_files:
            assert httpx.get(f"{urls[0]}/agencies/{agency}/winners").json()["winners"] == winners[agency]
        assert draws(hosts) == 1
    finally:
        for host in hosts:
            host.stop()
