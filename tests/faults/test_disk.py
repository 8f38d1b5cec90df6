"""A full and a read-only data dir, on a real 2 MiB tmpfs: 503 with the cause, nothing half-written.

Needs root (to mount); skipped with the reason otherwise. The server's log goes to the test's
own tmp dir, never to the small tmpfs.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.server import Server
from tests.faults.support import SORTEO, WINNING, Unexpected5xx, check_bets_file, digest, wait_workers_loaded
from tests.figures import lost_and_duplicated, record
from tests.helpers import round_file, stored_rows, without_log

pytestmark = pytest.mark.faults


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 2 MiB tmpfs, unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (os.geteuid() != 0)")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mount_point)], capture_output=True, timeout=30)
        if subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def bets_csv(agency: int, count: int, start: int = 0) -> bytes:
    """``count`` valid bets with unique documents; one in 500 has the winning number."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for i in range(start, start + count):
        writer.writerow(
            (
                f"Ana María {i % 7}",
                "O'Connor, Núñez",
                str(agency * 10_000_000 + i),
                "1990-01-01",
                WINNING if i % 500 == 0 else i % 10_000,
            )
        )
    return out.getvalue().encode()


def expected(agency: int, body: bytes) -> Counter:
    return Counter((agency, a, b, c, d, int(e)) for a, b, c, d, e in csv.reader(io.StringIO(body.decode())))


def fill(path: Path) -> int:
    """Write ``path`` until the file system is full, down to the last byte; return its size.

    tmpfs counts whole pages, so what is left free afterwards is the slack at the end of the
    existing files' last pages: a few hundred bytes to a few KiB. A chunk's append then gets a
    short write into that slack followed by ENOSPC, the "half-written" case.
    """
    size = 0
    with open(path, "wb", buffering=0) as f:
        for block in (65536, 4096, 256, 1):
            try:
                while True:
                    size += f.write(b"\0" * block)
            except OSError as error:
                assert error.errno == 28, error  # ENOSPC
    return size


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def snapshot(data: Path) -> dict[str, str]:
    return {name: digest(round_file(data, name)) for name in ("bets.csv", "ledger.jsonl", "done.log", "winners.json")}


def test_full_disk_gives_503_stores_nothing_and_recovers(tmpfs: Path, tmp_path: Path) -> None:
    figure = "full disk (tmpfs ENOSPC), then space freed"
    record(figure)  # the row shows, with the outcome, even if the test fails before measuring
    data = tmpfs / "data"
    sent: Counter = Counter()
    five = Unexpected5xx()
    with (
        Server(data, workers=2, agencies=2, log_path=tmp_path / "gunicorn.log") as server,
        httpx.Client(base_url=server.url, timeout=30, event_hooks={"response": [five]}) as client,
    ):
        wait_workers_loaded(server)
        first = bets_csv(1, 2_000)
        assert client.post("/agencies/1/bets", content=first, headers={"Content-Type": "text/csv"}).status_code == 201
        sent += expected(1, first)

        filler = tmpfs / "filler"
        fill(filler)
        before = snapshot(data)
        chunk = bets_csv(1, 5_000, start=2_000)  # ~200 KB: cannot fit
        headers = {"Content-Type": "text/csv", "Idempotency-Key": "full-disk-chunk"}
        with five.provoked():
            body = problem(client.post("/agencies/1/bets", content=chunk, headers=headers), 503)
            assert "No space left on device" in body["detail"], body
            assert snapshot(data) == before  # bets.csv and ledger.jsonl unchanged, byte for byte
            assert "No space left on device" in problem(client.get("/health"), 503)["detail"]
            # A retry while still full is refused the same way, still storing nothing; so is a
            # done (its line cannot be appended to done.log).
            problem(client.post("/agencies/1/bets", content=chunk, headers=headers), 503)
            assert "No space left on device" in problem(client.post("/agencies/2/done"), 503)["detail"]
        assert snapshot(data) == before

        filler.unlink()
        assert client.get("/health").status_code == 200
        r = client.post("/agencies/1/bets", content=chunk, headers=headers)
        assert (r.status_code, without_log(r.json())) == (201, {"agency": 1, "stored": 5_000}), r.text
        r = client.post("/agencies/1/bets", content=chunk, headers=headers)  # and once only
        assert (r.status_code, r.headers.get("idempotent-replayed")) == (200, "true")
        sent += expected(1, chunk)

        # The round completes.
        second = bets_csv(2, 1_000)
        assert client.post("/agencies/2/bets", content=second, headers={"Content-Type": "text/csv"}).status_code == 201
        sent += expected(2, second)
        assert client.post("/agencies/1/done").json()["drawn"] is False
        assert client.post("/agencies/2/done").json()["drawn"] is True
        winners = {agency: client.get(f"/agencies/{agency}/winners").json()["winners"] for agency in (1, 2)}

    lost, duplicated = lost_and_duplicated(sent, stored_rows(data))
    record(figure, faults=1, errors_5xx=five.count, lost=lost, duplicated=duplicated)
    assert five.count == 0
    assert (lost, duplicated) == (0, 0)
    assert check_bets_file(round_file(data, "bets.csv"), validate=True) == 8_000
    assert server.log().count(SORTEO) == 1
    for agency in (1, 2):
        assert winners[agency] == [row[3] for row in _file_rows(data) if row[0] == agency and row[5] == WINNING]
        assert len(winners[agency]) == {1: 14, 2: 2}[agency]


def test_read_only_disk_gives_503_and_recovers_when_writable(tmpfs: Path, tmp_path: Path) -> None:
    figure = "read-only disk (tmpfs remount,ro), then rw"
    record(figure)
    data = tmpfs / "data"
    five = Unexpected5xx()
    with (
        Server(data, workers=2, agencies=2, log_path=tmp_path / "gunicorn.log") as server,
        httpx.Client(base_url=server.url, timeout=30, event_hooks={"response": [five]}) as client,
    ):
        wait_workers_loaded(server)
        first = bets_csv(1, 500)
        assert client.post("/agencies/1/bets", content=first, headers={"Content-Type": "text/csv"}).status_code == 201
        _remount(tmpfs, "ro")
        before = snapshot(data)
        chunk = bets_csv(1, 500, start=500)
        headers = {"Content-Type": "text/csv", "Idempotency-Key": "read-only-chunk"}
        with five.provoked():
            body = problem(client.post("/agencies/1/bets", content=chunk, headers=headers), 503)
            assert "Read-only file system" in body["detail"], body
            assert "Read-only file system" in problem(client.get("/health"), 503)["detail"]
        assert snapshot(data) == before

        _remount(tmpfs, "rw")
        assert client.get("/health").status_code == 200
        assert client.post("/agencies/1/bets", content=chunk, headers=headers).status_code == 201
        status = client.get("/status").json()
    lost, duplicated = lost_and_duplicated(expected(1, first) + expected(1, chunk), stored_rows(data))
    record(figure, faults=1, errors_5xx=five.count, lost=lost, duplicated=duplicated)
    assert five.count == 0
    assert (lost, duplicated) == (0, 0)
    assert status["bets"] == 1_000


def test_worker_restarted_while_disk_is_read_only_keeps_serving_503(tmpfs: Path, tmp_path: Path) -> None:
    """A worker (re)booting on a read-only data dir serves 503, and the server stays up.

    A regression test for a bug this suite found: FileStore.__init__ took the lock to
    recover, the lock file could not be opened on a read-only file system, the worker failed
    to boot (exit code 3), and gunicorn's master then shut the whole server down ("Reason:
    Worker failed to boot"): one worker crash or restart while the disk was read-only turned
    a 503 into an outage that outlived the disk problem.
    """
    figure = "worker SIGKILLed and respawned while the disk is read-only"
    record(figure)
    data = tmpfs / "data"
    five = Unexpected5xx()
    server = Server(data, workers=2, agencies=2, log_path=tmp_path / "gunicorn.log").start()
    try:
        client = httpx.Client(base_url=server.url, timeout=10, event_hooks={"response": [five]})
        wait_workers_loaded(server)
        _remount(tmpfs, "ro")
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)  # e.g. OOM, or gunicorn's own max-requests restart
        # Until the new (third) worker has loaded the app, or gunicorn has given up on it.
        new_worker_loaded = False
        deadline = time.monotonic() + 60
        while not new_worker_loaded and server.proc.poll() is None and time.monotonic() < deadline:
            booted = re.findall(r"Booting worker with pid: (\d+)", server.log())
            new_worker_loaded = (
                len(booted) >= 3 and f"[{booted[2]}] [INFO] Application startup complete." in server.log()
            )
            time.sleep(0.05)
        server_alive = server.proc.poll() is None
        assert server_alive, (
            "gunicorn shut down when a worker restarted on the read-only data dir:\n" + server.log()[-1500:]
        )
        assert new_worker_loaded, "the respawned worker did not load the app within 60 s:\n" + server.log()[-1500:]
        with five.provoked():
            for _ in range(4):  # both workers answer
                assert "Read-only file system" in problem(client.get("/health"), 503)["detail"]
        _remount(tmpfs, "rw")
        healthy = client.get("/health").status_code
        sent = bets_csv(1, 10)
        stored_status = client.post("/agencies/1/bets", content=sent, headers={"Content-Type": "text/csv"}).status_code
        client.close()
    finally:
        server.stop()
    lost, duplicated = lost_and_duplicated(expected(1, sent), stored_rows(data))
    record(figure, faults=2, errors_5xx=five.count, lost=lost, duplicated=duplicated)  # read-only disk + SIGKILL
    assert (healthy, stored_status) == (200, 201)
    assert five.count == 0
    assert (lost, duplicated) == (0, 0)


def _remount(mount_point: Path, mode: str) -> None:
    done = subprocess.run(
        ["mount", "-o", f"remount,{mode}", str(mount_point)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


def _file_rows(data: Path) -> list[tuple]:
    with open(round_file(data, "bets.csv"), newline="", encoding="utf-8") as f:
        return [(int(a), b, c, d, e, int(n)) for a, b, c, d, e, n in csv.reader(f)]
