"""What open operator pages cost the server: CPU of gunicorn's processes with and without them.

    python -m bench --only operator          # or: python -m bench.operator_page [--pages 50]

A trickle of uploads (one 100-bet chunk every half second) keeps the round changing, so every
page gets an update at each refresh: the worst case for the streams. The server's CPU time
(master and workers, from /proc) is measured over the same span twice: trickle alone, then
trickle plus N pages, each a client following ``/operator/events`` as the page's script
does (reconnecting when the server ends a stream). The difference is what the pages cost,
in percent of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.proc import cpu_seconds
from devtools.server import Server

AGENCIES = 5
TRICKLE_EVERY = 0.5  # seconds between chunks
TRICKLE_BETS = 100
WARMUP = 3.0  # seconds for the pages to connect before measuring


def _chunk(serial: int) -> bytes:
    return "".join(
        f"Ana,Pérez,{30_000_000 + serial * TRICKLE_BETS + i},1990-01-01,{(serial + i) % 10_000}\n"
        for i in range(TRICKLE_BETS)
    ).encode()


async def _trickle(url: str, stop: asyncio.Event) -> int:
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not stop.is_set():
            agency = sent % AGENCIES + 1
            r = await client.post(
                f"/agencies/{agency}/bets", content=_chunk(sent), headers={"Content-Type": "text/csv"}
            )
            r.raise_for_status()
            sent += 1
            await asyncio.sleep(TRICKLE_EVERY)
    return sent


async def _page(url: str, stop: asyncio.Event, events: list[int], index: int) -> None:
    """One open page: follow the event stream, reconnect when it ends, count the updates."""
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        while not stop.is_set():
            async with client.stream("GET", "/operator/events") as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        events[index] += 1
                    if stop.is_set():
                        return


async def _measure(server: Server, pages: int, seconds: float) -> dict:
    stop = asyncio.Event()
    events = [0] * pages
    trickle = asyncio.create_task(_trickle(server.url, stop))
    followers = [asyncio.create_task(_page(server.url, stop, events, i)) for i in range(pages)]
    await asyncio.sleep(WARMUP)
    pids = [server.proc.pid, *server.worker_pids()]
    before, events_before, started = cpu_seconds(pids), sum(events), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, elapsed = cpu_seconds(pids) - before, time.monotonic() - started
    received = sum(events) - events_before
    stop.set()
    await asyncio.gather(trickle, *followers, return_exceptions=True)
    return {
        "pages": pages,
        "seconds": elapsed,
        "server_cpu_s": cpu,
        "core_percent": 100 * cpu / elapsed,
        "updates_per_page_per_s": received / pages / elapsed if pages else 0.0,
    }


def run(pages: int = 50, seconds: float = 20.0, workers: int = 2) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        with Server(Path(tmp) / "data", workers=workers, agencies=AGENCIES) as server:
            idle = asyncio.run(_measure(server, 0, seconds))
            busy = asyncio.run(_measure(server, pages, seconds))
    return {
        "workers": workers,
        "pages": pages,
        "baseline_core_percent": idle["core_percent"],
        "with_pages_core_percent": busy["core_percent"],
        "pages_cost_core_percent": busy["core_percent"] - idle["core_percent"],
        "updates_per_page_per_s": busy["updates_per_page_per_s"],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_page", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    result = run(args.pages, args.seconds)
    print(
        f"{result['pages']} pages: the server used {result['with_pages_core_percent']:.1f}% of a core "
        f"vs {result['baseline_core_percent']:.1f}% without them: the pages cost "
        f"{result['pages_cost_core_percent']:.1f}% ({result['updates_per_page_per_s']:.2f} updates/page/s)"
    )


if __name__ == "__main__":
    main()
