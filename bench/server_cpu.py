"""Server CPU per bet, and the fixed CPU cost of a request, read from ``/proc``.

    python -m bench.server_cpu                 # 1M bets, median of 3 runs (about 30 s on 2 cores)

Method: a real gunicorn (``devtools.server.Server``, 2 workers) gets 1M bets from 10 agencies
at once, in 5,000-bet CSV chunks shaped like the uploader's (LF bodies, ``Upload-Id``,
``Upload-Offset``, ``Idempotency-Key``). The workers' CPU is their threads' time on a CPU,
in ns (``/proc/<pid>/task/<tid>/schedstat``; utime + stime of ``/proc/<pid>/stat``, in 10 ms
ticks, when a thread ended meanwhile), read before and after (after a warm-up chunk per
worker); CPU per bet is the difference over the bets sent. The sender's own CPU is not
counted. RSS is each worker's ``VmRSS`` at the end and its peak (``VmHWM``).

The fixed cost of a ``/bets`` request is measured the same way over 4,000 one-bet chunks (10
agencies at once). The floor under it is measured over many tiny requests to a minimal
app served by the same gunicorn config and worker class: a FastAPI route vs a raw ASGI
callable (``bench/asgi_floor.py``), both answering a small JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.proc import cpu_seconds, cpu_seconds_between, status_bytes, thread_nanoseconds
from devtools.server import ROOT, Server, free_port

FIRST = ["Santiago", "Valentina", "Nicolás", "Camila", "María José", "Joaquín", "Sofía", "Juan Pablo"]
LAST = ["Lorca", "Agüero", "Álvarez", "Mamani", "O'Connor", "Núñez", "Pérez García", "Leiva"]


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of one process, in MB."""
    return status_bytes(pid, "VmRSS") / 2**20, status_bytes(pid, "VmHWM") / 2**20


def chunk_bodies(bets: int, chunk: int, seed: int = 7) -> list[bytes]:
    """LF bodies of ``chunk`` bets, real shapes (accents, spaces, apostrophes), like an agency file."""
    import random

    rng = random.Random(seed)
    lines = [
        f"{rng.choice(FIRST)},{rng.choice(LAST)},{rng.randrange(10_000_000, 45_000_000)},"
        f"{rng.randrange(1940, 2007)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d},{rng.randrange(10_000)}\n"
        for _ in range(bets)
    ]
    return ["".join(lines[i : i + chunk]).encode() for i in range(0, bets, chunk)]


async def _send(url: str, agencies: int, bodies: list[bytes], chunk: int, upload_id: str) -> None:
    async def agency(client: httpx.AsyncClient, number: int) -> None:
        for i, body in enumerate(bodies):
            start = i * chunk
            response = await client.post(
                f"/agencies/{number}/bets",
                content=body,
                headers={
                    "Content-Type": "text/csv",
                    "Upload-Id": upload_id,
                    "Upload-Offset": str(start),
                    "Idempotency-Key": f"{upload_id}:{start}-{start + chunk}",
                },
            )
            if response.status_code != 201:
                raise RuntimeError(f"agency {number} chunk {i}: {response.status_code} {response.text[:300]}")

    limits = httpx.Limits(max_connections=agencies, max_keepalive_connections=agencies)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(agency(client, a) for a in range(1, agencies + 1)))


def per_bet(bets: int = 1_000_000, chunk: int = 5000, agencies: int = 10, workers: int = 2) -> dict:
    """One run: µs of worker CPU per bet, and the workers' memory."""
    bodies = chunk_bodies(bets // agencies, chunk)
    with (
        tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp,
        Server(Path(tmp) / "data", workers=workers, agencies=agencies) as server,
    ):
        pids = server.worker_pids()
        # warm-up: a chunk per connection, so every worker has imported and compiled everything
        asyncio.run(_send(server.url, agencies, bodies[:1], chunk, "warm-up"))
        before, ticks, started = thread_nanoseconds(pids), cpu_seconds(pids), time.perf_counter()
        asyncio.run(_send(server.url, agencies, bodies, chunk, "measured"))
        seconds = time.perf_counter() - started
        used = cpu_seconds_between(pids, before, ticks)
        memory = [memory_mb(pid) for pid in pids]
    return {
        "us_per_bet": used / bets * 1e6,
        "seconds": seconds,
        "rss_mb": max(m[0] for m in memory),
        "peak_rss_mb": max(m[1] for m in memory),
    }


def per_small_chunk(chunks: int = 4000, workers: int = 2) -> float:
    """µs of worker CPU per one-bet chunk: the fixed cost of a ``/bets`` request, all of it
    (HTTP, routing, the id and header checks, the budget, the store's commit with its two
    fdatasyncs, metrics, the log line)."""
    agencies = 10
    bodies = chunk_bodies(chunks // agencies, 1)
    with (
        tempfile.TemporaryDirectory(prefix="bench-chunk-") as tmp,
        Server(Path(tmp) / "data", workers=workers, agencies=agencies) as server,
    ):
        pids = server.worker_pids()
        asyncio.run(_send(server.url, agencies, bodies[:20], 1, "warm-up"))
        before, ticks = thread_nanoseconds(pids), cpu_seconds(pids)
        asyncio.run(_send(server.url, agencies, bodies, 1, "measured"))
        return cpu_seconds_between(pids, before, ticks) / (len(bodies) * agencies) * 1e6


def per_request(app: str, requests: int = 3000, workers: int = 2) -> float:
    """µs of worker CPU per tiny GET to ``app`` (a module:attribute), on the server's config."""
    port = free_port()
    env = {**os.environ, "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers {workers}"}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        env["LOTTERY_DATA_DIR"] = str(Path(tmp) / "data")
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}/ping"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
            # Every worker, not only the one that answered first: a worker forked later would
            # serve requests whose CPU nobody counts (a run once read 0 µs that way).
            while True:
                found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout.split()
                pids = [int(p) for p in found]
                if len(pids) == workers:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(pids)} of {workers} workers started")
                time.sleep(0.05)

            async def hammer(count: int) -> None:
                async with httpx.AsyncClient(timeout=30) as client:

                    async def stream(n: int) -> None:
                        for _ in range(n):
                            (await client.get(url)).raise_for_status()

                    await asyncio.gather(*(stream(count // 10) for _ in range(10)))

            asyncio.run(hammer(200))
            before = cpu_seconds(pids)
            asyncio.run(hammer(requests))
            used = cpu_seconds(pids) - before
            if used <= 0:
                raise RuntimeError("the workers' CPU did not move: not the processes that served the requests")
            return used / requests * 1e6
        finally:
            proc.terminate()
            proc.wait(30)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.server_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bets", type=int, default=1_000_000)
    parser.add_argument("--no-floor", action="store_true", help="skip the per-request fixed cost")
    args = parser.parse_args(argv)
    runs = [per_bet(args.bets) for _ in range(args.runs)]
    for run in runs:
        print(
            f"  {run['us_per_bet']:.3f} µs/bet of worker CPU ({run['seconds']:.2f} s wall), "
            f"worker RSS {run['rss_mb']:.0f} MB (peak {run['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
    result = {
        "us_per_bet": statistics.median(r["us_per_bet"] for r in runs),
        "rss_mb": max(r["rss_mb"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "runs": runs,
    }
    print(f"  server CPU: {result['us_per_bet']:.3f} µs/bet (median of {args.runs}), 5,000-bet CSV chunks, 2 workers")
    if not args.no_floor:
        result["small_chunk_us"] = per_small_chunk()
        print(f"  fixed cost of a /bets request (one-bet chunks): {result['small_chunk_us']:.0f} µs of worker CPU")
        result["request_us_fastapi"] = per_request("bench.asgi_floor:fastapi_app")
        result["request_us_raw_asgi"] = per_request("bench.asgi_floor:raw_app")
        print(
            f"  fixed cost of a request: FastAPI route {result['request_us_fastapi']:.0f} µs, "
            f"raw ASGI {result['request_us_raw_asgi']:.0f} µs of worker CPU"
        )
    return result


if __name__ == "__main__":
    main()
