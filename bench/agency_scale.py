"""A round of N agencies x M bets (issue 21): does a request cost more as agencies grow?

Every agency uploads its M bets in one chunk, then says done, then asks its winners: three
phases, each run to the end before the next, over ``connections`` keep-alive connections
(200: the issue's). Reported per phase: requests/s and p50/p99 latency; for the round: the
time from the first upload to the last winners answer. Throughout the round, one connection
each asks ``GET /status`` and ``GET /operator/state`` every ``WATCH_PAUSE`` seconds, as
waiting agencies and an open operator's page do: their p99 and worst latency *during* the
round (``during``). Then, outside the round's time, 1,000 ``GET /status`` and 1,000 ``GET
/rounds/1`` at full speed. ``run`` also rates done and winners with N agencies against 500 in
the same run (``vs_500``: the issue asks for at least 0.8x).

The load client is not the server's rival for the clock: every request is built (bytes on the
wire) before the clock starts, and one asyncio process speaks plain HTTP/1.1 over raw sockets
(no HTTP library per request). Its own CPU is measured per phase; ``client_busy`` near 1.0
means the client, not the server, set the pace (the result says ``client_saturated``).

    python -m bench.agency_scale [--backend files|pg] [--agencies 10,1000,10000] [--bets 60] [--connections 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from bench.load import encode, make_bets
from bench.proc import cpu_seconds
from devtools.server import Server

PHASES = ("upload", "done", "winners")
READS = ("status", "round")  # after the round: GET /status and GET /rounds/1, READ_REQUESTS of each
READ_REQUESTS = 1000
WATCHED = {"status": "/status", "operator": "/operator/state"}  # asked throughout the round
WATCH_PAUSE = 0.05
BASELINE = 500  # agencies: done and winners with N agencies are rated against this many, same run
CONNECTIONS = 200
SATURATED = 0.9  # the client's CPU over the phase's wall time above which it set the pace


def build_requests(agencies: int, bets: int, host: str) -> dict[str, list[bytes]]:
    """Every request of the round, as bytes, per phase (agency order)."""
    pool = make_bets(bets, seed=21)
    body, content_type = encode(pool, "csv")
    head = f"Host: {host}\r\nConnection: keep-alive\r\n"
    return {
        "upload": [
            (
                f"POST /agencies/{a}/bets HTTP/1.1\r\n{head}Content-Type: {content_type}\r\n"
                f"Idempotency-Key: scale-{a}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            for a in range(1, agencies + 1)
        ],
        "done": [
            f"POST /agencies/{a}/done HTTP/1.1\r\n{head}Content-Length: 0\r\n\r\n".encode()
            for a in range(1, agencies + 1)
        ],
        "winners": [f"GET /agencies/{a}/winners HTTP/1.1\r\n{head}\r\n".encode() for a in range(1, agencies + 1)],
        "status": [f"GET /status HTTP/1.1\r\n{head}\r\n".encode()] * READ_REQUESTS,
        "round": [f"GET /rounds/1 HTTP/1.1\r\n{head}\r\n".encode()] * READ_REQUESTS,
    }


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding":
            raise RuntimeError("a chunked response: this client reads Content-Length bodies only")
    return status, await reader.readexactly(length)


async def run_phase(
    host: str, port: int, requests: list[bytes], connections: int, answers: list[bytes] | None = None
) -> dict:
    """Send ``requests`` over ``connections`` keep-alive connections; rate, latencies, client CPU.
    With ``answers`` (a list as long as ``requests``), each response's body is kept at its request's index."""
    latencies: list[float] = []
    failures: list[str] = []
    queue = iter(enumerate(requests))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for at, request in queue:  # one iterator shared: each request is sent once
                started = time.perf_counter()
                status, body = await _exchange(reader, writer, request)
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    failures.append(f"{status} {body[:200]!r}")
                if answers is not None:
                    answers[at] = body
        finally:
            writer.close()

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(connections, len(requests)))))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    latencies.sort()
    return {
        "requests": len(requests),
        "seconds": round(seconds, 3),
        "per_s": round(len(requests) / seconds),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "max_ms": round(1000 * latencies[-1], 1),
        "client_busy": round(client_cpu / seconds, 2),
    }


async def watch(host: str, port: int, path: str, stop: asyncio.Event) -> dict:
    """``GET path`` on one keep-alive connection every WATCH_PAUSE seconds until ``stop``: latencies."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n\r\n".encode()
    latencies: list[float] = []
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            status, body = await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_PAUSE)
    finally:
        writer.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "max_ms": round(1000 * latencies[-1], 1),
    }


def drive(url: str, agencies: int, bets: int, connections: int, worker_pids: list[int]) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = build_requests(agencies, bets, f"{host}:{port}")

    async def main() -> dict:
        phases = {}
        server_cpu = cpu_seconds(worker_pids)
        stop = asyncio.Event()
        watchers = [asyncio.create_task(watch(host, port, path, stop)) for path in WATCHED.values()]
        started = time.perf_counter()
        try:
            for phase in PHASES:
                phases[phase] = await run_phase(host, port, requests[phase], connections)
        finally:
            stop.set()
            during = dict(zip(WATCHED, await asyncio.gather(*watchers), strict=True))
        seconds = time.perf_counter() - started
        for phase in READS:  # not part of the round's time
            phases[phase] = await run_phase(host, port, requests[phase], connections)
        return {
            "round_s": round(seconds, 2),
            "server_cpu_s": round(cpu_seconds(worker_pids) - server_cpu, 2),
            "client_saturated": any(p["client_busy"] >= SATURATED for p in phases.values()),
            **phases,
            "during": during,
        }

    return asyncio.run(main())


@contextlib.contextmanager
def serving(backend: str, work: Path, agencies: int, workers: int) -> Iterator[Server]:
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if backend == "pg":
            from bench.pg_round import bench_database_url, round_database

            env["LOTTERY_DATABASE_URL"] = stack.enter_context(round_database(bench_database_url()))
        server = Server(work / "data", workers=workers, agencies=agencies, env=env, log_path=work / "server.log")
        stack.enter_context(server)
        yield server


def run_one(backend: str, agencies: int, bets: int, *, workers: int = 4, connections: int = CONNECTIONS) -> dict:
    with (
        tempfile.TemporaryDirectory(prefix="bench-agencies-") as tmp,
        serving(backend, Path(tmp), agencies, workers) as server,
    ):
        result = drive(server.url, agencies, bets, connections, server.worker_pids())
    return {
        "backend": backend,
        "agencies": agencies,
        "bets_per_agency": bets,
        "workers": workers,
        "connections": connections,
        **result,
    }


def describe(row: dict) -> str:
    phases = ", ".join(f"{p} {row[p]['per_s']:,}/s p99 {row[p]['p99_ms']:.0f} ms" for p in PHASES + READS)
    busy = max(row[p]["client_busy"] for p in PHASES + READS)
    during = ", ".join(
        f"{name} p99 {row['during'][name]['p99_ms']:.0f} ms (max {row['during'][name]['max_ms']:.0f})"
        for name in WATCHED
    )
    return (
        f"  {row['backend']:5} {row['agencies']:>6,} agencies x {row['bets_per_agency']} bets: round "
        f"{row['round_s']:.2f}s; {phases}; during the round: {during}; "
        f"client CPU {busy:.0%}{' (SATURATED)' if row['client_saturated'] else ''}"
    )


def rate_against_baseline(rows: list[dict]) -> None:
    """Each row's done and winners rates over the BASELINE-agency row's of its backend (same run)."""
    base = {row["backend"]: row for row in rows if row["agencies"] == BASELINE}
    for row in rows:
        if row["backend"] in base and row["agencies"] > BASELINE:
            row["vs_500"] = {
                p: round(row[p]["per_s"] / base[row["backend"]][p]["per_s"], 2) for p in ("done", "winners")
            }


def run(
    backends: tuple[str, ...] = ("files", "pg"),
    sizes: tuple[int, ...] = (10, BASELINE, 1000, 10_000),
    bets: int = 60,
    connections: int = CONNECTIONS,
) -> list[dict]:
    rows = []
    for backend in backends:
        if backend == "pg" and not _database_reachable():
            print("  pg skipped: PostgreSQL not reachable (run .ci/postgres.sh)")
            continue
        for agencies in sizes:
            rows.append(run_one(backend, agencies, bets, connections=connections))
            print(describe(rows[-1]), flush=True)
    rate_against_baseline(rows)
    for row in rows:
        if "vs_500" in row:
            ratios = row["vs_500"]
            print(
                f"  {row['backend']:5} {row['agencies']:>6,} agencies against {BASELINE}: "
                f"done {ratios['done']:.2f}x, winners {ratios['winners']:.2f}x (the issue: at least 0.8x)"
            )
    return rows


def _database_reachable() -> bool:
    from bench.pg_round import bench_database_url

    try:
        import psycopg

        psycopg.connect(bench_database_url(), connect_timeout=3).close()
    except Exception:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agency_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="files,pg")
    parser.add_argument("--agencies", default=f"10,{BASELINE},1000,10000")
    parser.add_argument("--bets", type=int, default=60)
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="keep-alive connections of the client")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    sizes = tuple(int(n) for n in args.agencies.split(","))
    rows = run(tuple(args.backend.split(",")), sizes, args.bets, args.connections)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
