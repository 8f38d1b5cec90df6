"""A ticket sold is a request: one-bet POSTs, against the framework's own floor (issue 22).

    python -m bench.small_requests [--seconds 10] [--rounds 3] [--connections 64] [--workers 2]
                                   [--servers bare,postgres]

``wrk`` (Debian's package) sends POST ``/agencies/{a}/bets`` with one CSV bet each, its own
``Idempotency-Key`` per request, across 1,000 agencies, over keep-alive connections; the
requests are built once in wrk's ``init`` (Lua), so the generator spends nothing per request
but sending. Three servers on the same gunicorn config and worker count, one after the other:
a bare FastAPI POST endpoint (reads the body, answers JSON: ``bench/asgi_floor.py``), the
service on the files backend, and on PostgreSQL (a fresh database). Reported per server:
requests/s, the ratio to the bare endpoint of the same run, p50 and p99, the server workers'
CPU per answered request and the machine's idle share meanwhile (``/proc``: CPU-bound, or
waiting on a lock or the disk), wrk's own CPU (its share of one core: saturated near the
thread count) and, for the service, the bets stored
beside the 201s counted (stored is at least the answered, and at most the connections more:
wrk stops counting at its deadline with requests in flight, which are stored).

The servers take turns for ``--rounds`` rounds, each ratio against the bare endpoint of its
own round: on a shared 2-core machine one 10 s run of the same code reads up to 14% apart from
the next, so the summary gives each server's median ratio and its worst p99 over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.pg_round import bench_database_url, round_database
from bench.proc import child_pids, cpu_seconds, machine_ticks, rusage_seconds
from devtools.server import ROOT, Server, free_port

AGENCIES = 1000
PREBUILT = 100_000  # requests per wrk thread, built once in init (its CPU is in wrk's figure); then replays

# wrk's script: every request is built in init (one bet, its own key, agencies in turn); the
# summary is one JSON line on stderr.
SCRIPT = """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  requests = {}
  local agencies = tonumber(args[1])
  local count = tonumber(args[2])
  for i = 1, count do
    local agency = (i + id * 7) % agencies + 1
    local body = string.format("Ana,Lopez,%d,1999-03-17,%d\\n", 20000000 + i, i %% 10000)
    local headers = {["Content-Type"] = "text/csv", ["Idempotency-Key"] = string.format("t%d-%d", id, i)}
    requests[i] = wrk.format("POST", string.format("/agencies/%d/bets", agency), headers, body)
  end
  total = count
  n = 0
end
function request()
  n = n % total + 1  -- past the table (a very fast server): replays, answered 200
  return requests[n]
end
function done(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests": %d, "seconds": %f, "non2xx": %d, "errors": %d, "p50_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
""".replace("%%", "%")


def measured(url: str, workers: list[int], seconds: float, connections: int) -> dict:
    """:func:`wrk`, plus the server workers' CPU per answered request (µs) and the machine's
    idle share meanwhile (what is left when the CPU is not the limit: a lock, the disk)."""
    cpu, (ticks, idle) = cpu_seconds(workers), machine_ticks()
    found = wrk(url, seconds, connections)
    cpu, (all_after, idle_after) = cpu_seconds(workers) - cpu, machine_ticks()
    found["worker_us"] = cpu / max(1, found["requests"] - found["non2xx"] - found["errors"]) * 1e6
    found["idle"] = (idle_after - idle) / max(1, all_after - ticks)
    return found


def wrk(url: str, seconds: float, connections: int, threads: int = 2) -> dict:
    """One wrk run; its summary plus the generator's own CPU (seconds, and cores used)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(SCRIPT)
    try:
        before = rusage_seconds(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", script.name,
             url, "--", str(AGENCIES), str(PREBUILT)],
            capture_output=True, text=True, timeout=seconds + 120,
        )  # fmt: skip
        cpu = rusage_seconds(resource.RUSAGE_CHILDREN) - before
    finally:
        os.unlink(script.name)
    line = [part for part in proc.stderr.splitlines() if part.startswith("{")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-300:]} {proc.stderr[-300:]}")
    found = json.loads(line[-1])
    found["rps"] = (found["requests"] - found["non2xx"] - found["errors"]) / found["seconds"]
    found["wrk_cpu_s"] = cpu
    found["wrk_cores"] = cpu / found["seconds"]
    return found


@contextmanager
def bare_server(workers: int) -> Iterator[tuple[str, list[int]]]:
    """The bare FastAPI POST endpoint on the server's gunicorn config: its base URL and its workers."""
    port = free_port()
    env = {**os.environ, "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers {workers}"}
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        env["LOTTERY_DATA_DIR"] = str(Path(tmp) / "data")
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "bench.asgi_floor:fastapi_app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:  # every worker forked (one answering is not all of them), and answering
                try:
                    if len(child_pids(proc.pid)) == workers and httpx.get(url + "/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the bare endpoint's {workers} workers did not answer within 30 s")
                time.sleep(0.05)
            yield url, child_pids(proc.pid)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


def stored_bets(url: str) -> int:
    return int(httpx.get(url + "/status", timeout=30).json()["bets"])


SERVERS = ("bare", "files", "postgres")


def run(
    seconds: float = 10, connections: int = 64, workers: int = 2, servers: tuple[str, ...] = SERVERS, rounds: int = 3
) -> dict:
    """``servers``: which of SERVERS to measure; the bare endpoint always is (the ratios' base).
    ``rounds``: how many times they take turns; the summary is over the rounds."""
    if shutil.which("wrk") is None:  # the rest of make bench still runs
        print("  skipped: wrk is missing (Debian: apt-get install wrk)")
        return {"skipped": "wrk is missing"}
    print(
        f"  one-bet POSTs, {connections} connections, {workers} workers, {seconds:g} s a server, "
        f"{rounds} round{'s' * (rounds != 1)} (wrk, pre-built requests)"
    )
    results: dict = {"seconds": seconds, "connections": connections, "workers": workers, "rounds": []}
    for number in range(1, rounds + 1):
        found = one_round(seconds, connections, workers, servers)
        for name in (name for name in SERVERS if name in found):
            print(f"  {number}  {_line(name, found[name])}")
        results["rounds"].append(found)
    results["summary"] = summary = _summary(results["rounds"])
    for name, row in summary.items():
        print(
            f"  {name:9} median x{row['ratio']:.2f} ({row['ratios']}), worst p99 {row['p99_ms']:.1f} ms, "
            f"median {row['rps']:,.0f} req/s and {row['worker_us']:.0f} µs/req of the workers' CPU"
        )
    return results


def one_round(seconds: float, connections: int, workers: int, servers: tuple[str, ...]) -> dict:
    """The bare endpoint, then each server of ``servers``, each with its ratio to that bare run."""
    found: dict = {}
    with bare_server(workers) as (url, pids):
        found["bare"] = measured(url, pids, seconds, connections)
    with tempfile.TemporaryDirectory(prefix="bench-small-") as tmp:
        if "files" in servers:
            with Server(Path(tmp) / "data", workers=workers, agencies=AGENCIES) as server:
                found["files"] = measured(server.url, server.worker_pids(), seconds, connections)
                found["files"]["stored"] = stored_bets(server.url)
        if "postgres" in servers:
            with (
                round_database(bench_database_url()) as db,
                Server(
                    Path(tmp) / "pg", workers=workers, agencies=AGENCIES, env={"LOTTERY_DATABASE_URL": db}
                ) as server,
            ):
                found["postgres"] = measured(server.url, server.worker_pids(), seconds, connections)
                found["postgres"]["stored"] = stored_bets(server.url)
    for row in found.values():
        row["ratio"] = row["rps"] / found["bare"]["rps"]
    return found


def _line(name: str, r: dict) -> str:
    # wrk stops counting at its deadline: requests still in flight then are stored, not counted
    once = "" if name == "bare" else f", stored {r['stored']:,}, answered {r['requests'] - r['non2xx']:,}"
    return (
        f"{name:9} {r['rps']:8,.0f} req/s  x{r['ratio']:.2f}  p50 {r['p50_ms']:6.1f} ms"
        f"  p99 {r['p99_ms']:6.1f} ms  workers {r['worker_us']:4.0f} µs/req  idle {r['idle']:4.0%}"
        f"  (wrk CPU {r['wrk_cores']:.2f} cores{once}; non-2xx {r['non2xx']}, errors {r['errors']})"
    )


def _summary(rounds: list[dict]) -> dict:
    """Per server: the median of its rounds' ratios (each to its own round's bare run), the worst p99."""
    summary = {}
    for name in (name for name in SERVERS if name in rounds[0]):
        rows = [found[name] for found in rounds]
        summary[name] = {
            "ratio": statistics.median(row["ratio"] for row in rows),
            "ratios": ", ".join(f"{row['ratio']:.2f}" for row in rows),
            "p99_ms": max(row["p99_ms"] for row in rows),
            "rps": statistics.median(row["rps"] for row in rows),
            "worker_us": statistics.median(row["worker_us"] for row in rows),
        }
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.small_requests", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3, help="the servers take turns this many times")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--servers", default=",".join(SERVERS), help="which servers (the bare endpoint always runs)")
    args = parser.parse_args(argv)
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))} (choose from {', '.join(SERVERS)})")
    if args.rounds < 1:
        parser.error("--rounds is at least 1")
    return run(args.seconds, args.connections, args.workers, tuple(args.servers.split(",")), args.rounds)


if __name__ == "__main__":
    main()
