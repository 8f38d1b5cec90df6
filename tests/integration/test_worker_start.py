"""Work a worker would repeat is done once, in gunicorn's master, before it forks.

The CSV validator (app/csv_fast.py) asks every Unicode code point for its name classes: ~0.2 s
of CPU. Built by each worker on its first chunk, it landed in the middle of every round (the
first chunks of a round waited for it, twice with two workers); built in the master, every
worker inherits it. Each build logs one line with its process id.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from bench.server_cpu import chunk_bodies
from devtools.server import Server

BUILT = re.compile(r"action: validador_csv \| result: success \| fechas_hasta: \S+ \| proceso: (\d+)")


async def _send_at_once(url: str, bodies: list[bytes]) -> list[int]:
    """Every body at once, each on its own connection (so both workers get some)."""
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"/agencies/{n % 4 + 1}/bets", content=body, headers={"Content-Type": "text/csv"})
                for n, body in enumerate(bodies)
            )
        )
    return [response.status_code for response in responses]


def test_the_validator_is_built_once_in_the_master(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=4) as server:
        assert len(server.worker_pids()) == 2
        bodies = chunk_bodies(16 * 500, 500)
        assert asyncio.run(_send_at_once(server.url, bodies)) == [201] * 16
        builders = [int(pid) for pid in BUILT.findall(server.log())]
        assert builders == [server.proc.pid], server.log()[-3000:]
