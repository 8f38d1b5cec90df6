"""Ingest load: many agencies posting pre-encoded chunks at once, from one async process.

Bodies are built before the clock starts, so what is measured is the server: bets/s over
the whole load and per-chunk latency percentiles.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import httpx
import orjson

FIELDS = ("first_name", "last_name", "document", "birthdate", "number")


def make_bets(count: int, seed: int) -> list[tuple[str, str, str, str, int]]:
    rng = random.Random(seed)
    first = ["Santiago", "Valentina", "Nicolás", "Camila", "Mateo", "Lucía", "Joaquín", "Sofía"]
    last = ["Lorca", "Agüero", "Álvarez", "Mamani", "Soto", "Núñez", "Borges", "Leiva"]
    return [
        (
            rng.choice(first),
            rng.choice(last),
            str(rng.randrange(10_000_000, 45_000_000)),
            f"{rng.randrange(1940, 2006)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            rng.randrange(10_000),
        )
        for _ in range(count)
    ]


def encode(bets, kind: str) -> tuple[bytes, str]:
    if kind == "json":
        return orjson.dumps({"bets": [dict(zip(FIELDS, b, strict=False)) for b in bets]}), "application/json"
    return "".join(f"{a},{b},{c},{d},{e}\r\n" for a, b, c, d, e in bets).encode(), "text/csv"


async def _agency(
    client: httpx.AsyncClient, agency: int, bodies: list[tuple[bytes, str]], latencies: list[float]
) -> None:
    for i, (body, content_type) in enumerate(bodies):
        started = time.perf_counter()
        response = await client.post(
            f"/agencies/{agency}/bets",
            content=body,
            headers={"Content-Type": content_type, "Idempotency-Key": f"{agency}-{i}"},
        )
        latencies.append(time.perf_counter() - started)
        if response.status_code != 201:
            raise RuntimeError(f"agency {agency} chunk {i}: {response.status_code} {response.text[:300]}")


def run_load(url: str, agencies: int, bets_per_agency: int, chunk: int, kind: str = "csv", seed: int = 1) -> dict:
    """Post ``agencies * bets_per_agency`` bets, ``agencies`` streams at once; return rate and latencies."""
    pool = make_bets(bets_per_agency, seed)  # every agency sends the same bets: only speed matters here
    bodies = [encode(pool[i : i + chunk], kind) for i in range(0, len(pool), chunk)]

    async def main() -> tuple[float, list[float]]:
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=agencies, max_keepalive_connections=agencies)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            started = time.perf_counter()
            await asyncio.gather(*(_agency(client, a, bodies, latencies) for a in range(1, agencies + 1)))
            return time.perf_counter() - started, latencies

    seconds, latencies = asyncio.run(main())
    latencies.sort()
    total = agencies * bets_per_agency
    return {
        "bets": total,
        "seconds": seconds,
        "bets_per_s": total / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }
