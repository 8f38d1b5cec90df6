"""Bounds under hostile or heavy load (issue 10), with the default settings and 2 workers.

    python -m bench.load_bounds            # every scenario (about a minute)
    python -m bench.load_bounds held polls # some of them (parse, held, chunks, polls)
    python -m bench --only bounds          # the same, inside `make bench`

- ``held``: 40 connections each send a 16 MiB - 1 byte /bets body (bet lines) and hold.
- ``chunks``: ten agencies send a 4 MB CSV chunk at once, twice.
- ``parse``: peak memory of parsing one body, as a multiple of its size (a fresh process).
- ``polls``: 300 long polls (?wait=60) whose clients leave at once, then 200 that stay,
  then SIGTERM with those 200 open (how long until gunicorn exits).

For each: every worker's peak RSS (the kernel's VmHWM), its RSS after the load, the slowest
/health answer seen meanwhile (probed every 100 ms), and the workers' CPU for the polls.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.proc import cpu_seconds, status_bytes
from devtools.server import Server

MiB = 1024 * 1024
# Extra server environment for an experiment: BOUNDS_ENV="LOTTERY_BODY_BUDGET_BYTES=33554432 ..."
EXTRA_ENV = dict(item.split("=", 1) for item in os.environ.get("BOUNDS_ENV", "").split() if item)
LINE = b"Ana,Gomez,30904465,1999-03-17,7574\n"


class HealthProbe:
    """GET /health every 100 ms on a fresh connection, in a thread; keeps the slowest answer."""

    def __init__(self, url: str):
        self.url, self.slowest, self.failures = url, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            started = time.monotonic()
            try:
                ok = httpx.get(self.url + "/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.failures += not ok


def _post_and_hold(port: int, agency: int, body: bytes, answers: list[int], release: threading.Event) -> None:
    head = (
        f"POST /agencies/{agency}/bets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        sock.sendall(body)
        reply = sock.recv(4096)
        answers.append(int(reply.split()[1]) if reply else 0)
        release.wait(120)  # hold the connection until every client has its answer


def _run_clients(port: int, bodies: list[tuple[int, bytes]]) -> list[int]:
    answers: list[int] = []
    release = threading.Event()
    threads = [
        threading.Thread(target=_post_and_hold, args=(port, agency, body, answers, release)) for agency, body in bodies
    ]
    for t in threads:
        t.start()
    while len(answers) < len(threads) and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    release.set()
    for t in threads:
        t.join()
    return answers


def _measure(server: Server, load) -> dict:  # noqa: ANN001 - a callable running the load
    pids = server.worker_pids()
    base = {pid: status_bytes(pid, "VmRSS") for pid in pids}
    with HealthProbe(server.url) as probe:
        started = time.monotonic()
        outcome = load()
        seconds = time.monotonic() - started
        time.sleep(1.0)  # let the answers and frees settle before "after"
    return {
        "seconds": round(seconds, 2),
        "outcome": outcome,
        "base_rss_mb": [round(base[p] / 1e6) for p in pids],
        "peak_rss_mb": [round(status_bytes(p, "VmHWM") / 1e6) for p in pids],
        "after_rss_mb": [round(status_bytes(p, "VmRSS") / 1e6) for p in pids],
        "health_slowest_s": round(probe.slowest, 3),
        "health_failures": probe.failures,
        "loadavg_1m": float(open("/proc/loadavg").read().split()[0]),  # other work on the machine skews latency
    }


def held_bodies(where: Path) -> dict:
    body = (LINE * (16 * MiB // len(LINE) + 1))[: 16 * MiB - 1]
    with Server(where / "held" / "data", workers=2, agencies=40, env=EXTRA_ENV) as server:

        def load() -> dict:
            answers = _run_clients(server.port, [(a, body) for a in range(1, 41)])
            return {str(code): answers.count(code) for code in sorted(set(answers))}

        return {"scenario": "40 x 16 MiB-1 bodies held", "target_peak_mb": 300, **_measure(server, load)}


def four_mb_chunks(where: Path) -> dict:
    # 4 MB of valid bets, under the 100,000-bet chunk limit: 95,000 lines of 44 bytes.
    lines = [f"Ana,Gomez{i % 10_000:05d},{30_000_000 + i},1999-03-17,{i % 10_000}\n" for i in range(95_000)]
    body = "".join(lines).encode()
    with Server(where / "chunks" / "data", workers=2, agencies=10, env=EXTRA_ENV) as server:

        def load() -> dict:
            answers = []
            for _ in range(2):
                answers += _run_clients(server.port, [(a, body) for a in range(1, 11)])
            return {"chunk_bytes": len(body), **{str(c): answers.count(c) for c in sorted(set(answers))}}

        return {"scenario": "10 agencies x 4 MB chunks at once (x2)", "target_peak_mb": 200, **_measure(server, load)}


def long_polls(where: Path, abandoned: int = 300, live: int = 200, window: float = 5.0) -> dict:
    with Server(where / "polls" / "data", workers=2, agencies=2, env=EXTRA_ENV) as server:
        pids = server.worker_pids()
        request = b"GET /agencies/1/winners?wait=60 HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(abandoned):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(request)
        time.sleep(1.0)  # the workers see the closes
        before = cpu_seconds(pids)
        time.sleep(window)
        abandoned_share = (cpu_seconds(pids) - before) / window
        socks = []
        for _ in range(live):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(request)
            socks.append(sock)
        time.sleep(1.0)
        before = cpu_seconds(pids)
        time.sleep(window)
        live_share = (cpu_seconds(pids) - before) / window
        health = httpx.get(server.url + "/health", timeout=5).status_code
        assert server.proc is not None
        started = time.monotonic()  # SIGTERM with the live polls open: each gets 503 at once
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)
        stop_seconds = time.monotonic() - started
        answers = [sock.recv(64).split(b"\r\n")[0] for sock in socks]
        for sock in socks:
            sock.close()
        return {
            "scenario": f"{abandoned} abandoned, then {live} live long polls",
            "abandoned_cpu_pct": round(100 * abandoned_share, 2),
            "live_cpu_pct": round(100 * live_share, 2),
            "target_cpu_pct": 5,
            "health_during": health,
            "sigterm_to_exit_s": round(stop_seconds, 2),
            "polls_answered_503": sum(a.startswith(b"HTTP/1.1 503") for a in answers),
        }


_PARSE_PEAK = """
import sys
from app.ingest import parse_chunk
body = bytearray(sys.stdin.buffer.read())
def mb(key): return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) / 1024
base = mb("VmRSS")
try:
    parse_chunk(body, "text/csv", 1, 100_000)
    outcome = "stored"
except Exception as error:
    outcome = type(error).__name__
print(outcome, mb("VmHWM") - base)
"""


def parse_multiple(where: Path) -> dict:  # noqa: ARG001 - every scenario takes the scratch folder
    """Peak memory of parsing one body, over the body's size, each in a fresh process (VmHWM)."""
    import subprocess

    from devtools.server import ROOT

    bodies = {
        "4 MB of valid bets": "".join(
            f"Ana,Gomez{i % 10_000:05d},{30_000_000 + i},1999-03-17,{i % 10_000}\n" for i in range(95_000)
        ).encode(),
        "16 MiB-1 of bet lines (over the bet limit)": (LINE * (16 * MiB // len(LINE) + 1))[: 16 * MiB - 1],
    }
    row: dict = {"scenario": "parse peak / body size (ingest)"}
    for name, body in bodies.items():
        out = subprocess.run(
            [sys.executable, "-c", _PARSE_PEAK], input=body, capture_output=True, cwd=ROOT, check=True
        ).stdout.split()
        row[name] = f"{out[0].decode()}: x{float(out[1]) * MiB / len(body):.1f}"
    return row


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-bounds-") as tmp:
        for scenario in (parse_multiple, held_bodies, four_mb_chunks, long_polls):
            row = scenario(Path(tmp))
            rows.append(row)
            print("  " + ", ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
    return rows


if __name__ == "__main__":
    only = sys.argv[1:] or ["parse", "held", "chunks", "polls"]
    names = {"parse": parse_multiple, "held": held_bodies, "chunks": four_mb_chunks, "polls": long_polls}
    with tempfile.TemporaryDirectory(prefix="bench-bounds-") as tmp:
        for name in only:
            print(names[name](Path(tmp)), flush=True)
