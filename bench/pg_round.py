"""The 1M-bet round on the PostgreSQL backend, with one host and with two.

10 agencies x 100,000 generated bets; each "host" is a gunicorn master with its own workers
on its own loopback port, all sharing one database. The uploaders (`python -m client run`,
separate programs, their defaults) are timed as in bench/http_round.py, from launch to the
exit of the last one (upload, done, draw, winners); with two hosts, half of the agencies
point at each. Every round gets a database of its own, created on the server of
``database_url`` and dropped afterwards.

    python -m bench.pg_round [--database-url URL] [--bets 100000] [--agencies 10] [--workers N]

The URL defaults to LOTTERY_BENCH_DATABASE_URL, then LOTTERY_TEST_DATABASE_URL, then the
address .ci/postgres.sh uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.settings import DEFAULT_LOG_ORIGIN
from bench.http_round import run_round
from client.generate import generate
from devtools.server import Server
from tlog import keyfile

DEFAULT_URL = "postgresql://lottery@127.0.0.1:54329/lottery"


def bench_database_url() -> str:
    return os.environ.get("LOTTERY_BENCH_DATABASE_URL") or os.environ.get("LOTTERY_TEST_DATABASE_URL") or DEFAULT_URL


@contextlib.contextmanager
def round_database(server_url: str) -> Iterator[str]:
    """A new database for one round on the server of ``server_url``; dropped afterwards."""
    import psycopg

    name = f"lottery_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_round(files: dict[int, Path], work: Path, database_url: str, hosts: int, workers: int | None = None) -> dict:
    """One round on ``hosts`` hosts sharing a fresh database: seconds, bets/s, winners, draws."""
    key = work / f"h{hosts}-log.key"  # one transparency log for the database: every host signs with one key
    if not key.exists():
        keyfile.write_new_key(key, DEFAULT_LOG_ORIGIN)
    with round_database(database_url) as url:
        servers = [
            Server(
                work / f"h{hosts}-{n}" / "data",
                workers=workers or 2,
                agencies=len(files),
                log_path=work / f"pg-{hosts}-hosts-{n}.log",
                env={"LOTTERY_DATABASE_URL": url, "LOTTERY_LOG_KEY_FILE": str(key)},
            )
            for n in range(1, hosts + 1)
        ]
        try:
            for server in servers:
                server.data_dir.parent.mkdir(parents=True, exist_ok=True)
                server.start(timeout=60)
            result = run_round(files, work, servers=servers)
            status = httpx.get(servers[0].url + "/status", timeout=30).json()
            draws = sum(s.log().count("action: sorteo | result: success") for s in servers)
        finally:
            for server in servers:
                server.stop()
    bets = status["bets"]
    if not status["drawn"] or draws != 1:
        raise RuntimeError(f"{hosts} host(s): drawn={status['drawn']}, draw lines={draws}")
    return {
        "hosts": hosts,
        "workers_per_host": workers or 2,
        "bets": bets,
        "seconds": round(result["seconds"], 2),
        "bets_per_s": round(bets / result["seconds"]),
        "winners": sum(result["winners"].values()),
    }


def store_ceiling(database_url: str | None = None, *, writers: int = 4, chunks: int = 50, size: int = 2000) -> dict:
    """What the database takes with no HTTP in front: ``writers`` threads appending chunks of
    ``size`` bets (COPY, one transaction each) straight into a PostgresStore."""
    import random
    import threading
    import time

    from app.domain import WINNING_NUMBER, encode_rows
    from app.store import Chunk, UploadSpan
    from app.store.postgres import PostgresStore

    rng = random.Random(1)
    payloads = {
        a: encode_rows(
            [
                (
                    a,
                    "Santiago",
                    "Pérez García",
                    str(rng.randrange(10**7, 45 * 10**6)),
                    "1990-01-01",
                    rng.randrange(10_000),
                )
                for _ in range(size)
            ]
        )
        for a in range(1, writers + 1)
    }
    with round_database(database_url or bench_database_url()) as url:
        store = PostgresStore(url, writers, WINNING_NUMBER)
        try:

            def write(agency: int) -> None:
                for i in range(chunks):
                    store.append_chunk(
                        Chunk.build(agency, payloads[agency], size, f"k{i}", UploadSpan("bench", i * size))
                    )

            threads = [threading.Thread(target=write, args=(a,)) for a in payloads]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - started
        finally:
            store.close()
    bets = writers * chunks * size
    return {"writers": writers, "bets": bets, "seconds": round(seconds, 2), "bets_per_s": round(bets / seconds)}


def run(
    work: Path,
    *,
    database_url: str | None = None,
    agencies: int = 10,
    bets: int = 100_000,
    workers: int | None = None,
    host_counts: tuple[int, ...] = (1, 2),
) -> list[dict]:
    """The round on PostgreSQL with each number of hosts in ``host_counts``."""
    url = database_url or bench_database_url()
    files = dict(enumerate(generate(work / "agencies", agencies=agencies, bets=bets, seed=1), 1))
    return [pg_round(files, work, url, hosts, workers) for hosts in host_counts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_round", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--agencies", type=int, default=10)
    parser.add_argument("--bets", type=int, default=100_000, help="bets per agency")
    parser.add_argument("--workers", type=int, default=None, help="workers per host (default 2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lottery-pg-bench-") as tmp:
        results = run(
            Path(tmp), database_url=args.database_url, agencies=args.agencies, bets=args.bets, workers=args.workers
        )
    ceiling = store_ceiling(args.database_url)
    for r in results:
        print(
            f"PostgreSQL, {r['hosts']} host(s) x {r['workers_per_host']} workers: {r['bets']:,} bets in "
            f"{r['seconds']:.1f} s = {r['bets_per_s']:,} bets/s ({r['winners']} winners)"
        )
    print(
        f"PostgreSQL store alone, {ceiling['writers']} writers: {ceiling['bets']:,} bets in {ceiling['seconds']:.1f} s "
        f"= {ceiling['bets_per_s']:,} bets/s"
    )
    print(json.dumps({"rounds": results, "store_ceiling": ceiling}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
