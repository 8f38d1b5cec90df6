"""``GET /metrics`` against real gunicorn with 4 workers: the course dataset through real uploaders.

Each worker is a process with its own memory; a scrape is answered by whichever worker
accepts it. The totals must be the sum over every worker (prometheus_client's multiprocess
mode): every scrape, on a fresh connection, sums ``lottery_bets_stored_total`` to 78,697,
agency by agency, even after a worker was killed and replaced.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.server import Server
from tests.conftest import DATASET_COUNTS
from tests.postgres_db import fresh_database
from tests.support.uploader import uploader

WORKERS = 4
SCRAPES = 24


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """One scrape on a new connection: {(sample name, sorted labels): value}."""
    with httpx.Client(base_url=url, timeout=30) as client:  # a new connection: any worker may answer
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def bets_by_agency(samples: dict) -> dict[int, float]:
    return {
        int(dict(labels)["agency"]): value
        for (name, labels), value in samples.items()
        if name == "lottery_bets_stored_total"
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def run_uploaders(url: str, files: dict[int, Path]) -> None:
    procs = [
        # Small chunks: many of them, so that every worker stores some.
        uploader(
            *("run", "--server", url, "--agency", str(agency), "--file", str(path)),
            *("--batch-size", "1000", "--quiet", "--json"),
        )
        for agency, path in files.items()
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err


# The sums across workers are the metrics code's, whatever the store: `make test` runs the files store;
# PostgreSQL (its own draw, timed the same way) runs in `make test-long`.
@pytest.fixture(params=["files", pytest.param("postgres", marks=pytest.mark.long)])
def server(request, tmp_path: Path):
    with ExitStack() as stack:
        env = {}
        if request.param == "postgres":
            env["LOTTERY_DATABASE_URL"] = stack.enter_context(fresh_database())
        yield stack.enter_context(Server(tmp_path / "data", workers=WORKERS, agencies=5, env=env))


def test_a_scrape_from_any_worker_sums_every_worker(server: Server, dataset: Path) -> None:
    before = scrape(server.url)
    assert bets_by_agency(before) == {}
    assert value(before, "lottery_round") == 1
    assert value(before, "lottery_agencies_done") == 0

    run_uploaders(server.url, {a: dataset / f"agency-{a}.csv" for a in range(1, 6)})

    chunks_per_worker = set()
    for _ in range(SCRAPES):
        samples = scrape(server.url)
        assert bets_by_agency(samples) == DATASET_COUNTS
        assert sum(bets_by_agency(samples).values()) == 78_697
        assert value(samples, "lottery_agencies_done") == 5
        assert value(samples, "lottery_round") == 1
        assert value(samples, "lottery_draw_duration_seconds_count") == 1  # drawn once, by one worker
        stored = value(samples, "lottery_chunks_total", outcome="stored")
        chunks_per_worker.add(stored)
        # Every stored chunk was one 201 answered by some worker, and timed there.
        assert (
            # the uploader sends to the routes of the round it learned at start
            value(
                samples,
                "lottery_request_duration_seconds_count",
                method="POST",
                route="/rounds/{round}/agencies/{agency}/bets",
                status="201",
            )
            == stored
        )
        if not server.env.get("LOTTERY_DATABASE_URL"):  # the file lock; PostgreSQL locks in the database
            assert value(samples, "lottery_lock_wait_seconds_count") > 0
    assert chunks_per_worker == {sum(-(-n // 1000) for n in DATASET_COUNTS.values())}  # the same from every scrape

    # A worker killed and replaced by gunicorn: what it counted stays in the sums.
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in server.worker_pids() or len(server.worker_pids()) < WORKERS:
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.05)
    server.wait_ready()
    for _ in range(SCRAPES // 2):
        assert bets_by_agency(scrape(server.url)) == DATASET_COUNTS


def test_chunk_outcomes_and_unmatched_routes_are_counted(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=2) as server, httpx.Client(base_url=server.url) as client:
        bet = b"Ana,Perez,30904465,1999-03-17,7574\n"
        headers = {"Content-Type": "text/csv", "Idempotency-Key": "k1"}
        assert client.post("/agencies/1/bets", content=bet, headers=headers).status_code == 201
        assert client.post("/agencies/1/bets", content=bet, headers=headers).status_code == 200  # replayed
        bad = {"Content-Type": "text/csv"}
        assert client.post("/agencies/1/bets", content=b"Ana,Perez,x,1999-03-17,1\n", headers=bad).status_code == 422
        assert client.post("/agencies/1/done").status_code == 200
        assert client.post("/agencies/1/bets", content=bet, headers=bad).status_code == 409  # agency closed
        for path in ("/no/such/page", "/another/random/path"):
            assert client.get(path).status_code == 404
        samples = scrape(server.url)
    assert {
        o: value(samples, "lottery_chunks_total", outcome=o) for o in ("stored", "replayed", "rejected", "conflict")
    } == {
        "stored": 1,
        "replayed": 1,
        "rejected": 1,
        "conflict": 1,
    }
    assert bets_by_agency(samples) == {1: 1}
    assert value(samples, "lottery_agencies_done") == 1
    # Random paths share one series: the label is the route template, never the raw path.
    unmatched = value(samples, "lottery_request_duration_seconds_count", method="GET", route="unmatched", status="404")
    assert unmatched == 2
    routes = {dict(labels).get("route") for (name, labels) in samples if name.startswith("lottery_request_duration")}
    assert not any("random" in (r or "") or "such" in (r or "") for r in routes)


def test_a_killed_masters_metrics_dir_is_swept_by_the_next_start_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR each master makes its own temporary dir and removes it at
    exit; a SIGKILLed master cannot, so the next master on the machine removes the dirs whose
    master is gone (and only those: another server's dir stays while it runs)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp), "PROMETHEUS_MULTIPROC_DIR": ""}

    def metrics_dirs() -> set[str]:
        return {p.name for p in tmp.iterdir() if p.name.startswith("lottery-metrics-")}

    killed = Server(tmp_path / "killed", workers=1, agencies=1, env=env).start()
    left = metrics_dirs()
    killed.stop(signal.SIGKILL)
    assert len(left) == 1 and metrics_dirs() == left  # what a SIGKILL leaves behind
    with Server(tmp_path / "live", workers=1, agencies=1, env=env):
        live = metrics_dirs() - left
        with Server(tmp_path / "next", workers=1, agencies=1, env=env):
            after = metrics_dirs()
            assert left.isdisjoint(after), after  # the dead master's dir is gone
            assert live <= after and len(after) == 2  # the running server's stays, beside the new one's
        assert metrics_dirs() == live  # a graceful stop removes its own
    assert metrics_dirs() == set()


@pytest.mark.parametrize("workers", [1, 2])
def test_every_scrape_says_the_round_another_request_opened(tmp_path: Path, workers: int) -> None:
    """Issue 25.1: after ``POST /rounds`` opened round 2, a scrape through any worker says 2
    (the gauge was set from a constant 1 by every scrape). One worker: the scrape goes to the
    worker that opened it; two: scrapes on fresh connections reach both."""
    with Server(tmp_path / "data", workers=workers, agencies=1) as server, httpx.Client(base_url=server.url) as client:
        assert value(scrape(server.url), "lottery_round") == 1
        assert client.post("/agencies/1/done").status_code == 200
        assert client.get("/status").json()["drawn"] is True
        assert client.post("/rounds", json={}).status_code == 201
        for _ in range(SCRAPES):
            samples = scrape(server.url)
            assert value(samples, "lottery_round") == 2
            assert value(samples, "lottery_agencies_done") == 0


def test_request_durations_are_labelled_by_method_and_assets_share_one_label(tmp_path: Path) -> None:
    """Issue 25.14: GET and POST ``/rounds`` are two series (a ``method`` label); the docs' and the
    page's files (a script per release, any path under a mount) are one ``assets`` series, not one each."""
    assets = [
        "/docs",
        "/redoc",
        "/redoc/redoc.standalone.js",
        "/openapi.json",
        "/static/operator.js",
        "/static/operator.css",
        "/static-offline-docs/swagger-ui.css",
    ]
    with Server(tmp_path / "data", workers=1, agencies=1) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/rounds").status_code == 200
        assert client.post("/rounds", json={}).status_code == 409  # round 1 is not drawn
        for path in assets:
            assert client.get(path).status_code == 200, path
        samples = scrape(server.url)
    counts = {
        (labels["method"], labels["route"], labels["status"]): value
        for name, label_items in samples
        if name == "lottery_request_duration_seconds_count"
        for labels in [dict(label_items)]
        for value in [samples[(name, label_items)]]
        if labels["route"] != "/health"  # the test's wait for the server to be ready
    }
    assert counts == {
        ("GET", "/rounds", "200"): 1,
        ("POST", "/rounds", "409"): 1,
        ("GET", "assets", "200"): len(assets),
    }
