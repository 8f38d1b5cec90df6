"""The draw over a large stored round, in a fresh process: seconds and peak RSS.

``python -m bench.draw DIR`` opens the file store in DIR (a bets.csv with its ledger, made
by :func:`make_round`), marks the only agency done, which performs the draw, and prints JSON.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson

from devtools.server import ROOT


def make_round(data_dir: Path, bets: int, seed: int = 1) -> int:
    """A committed round of ``bets`` rows for agency 1 (one ledger record), written fast."""
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    block_rows = 100_000
    blocks = []
    for _b in range(10):  # ten different blocks, repeated: realistic lines without 10M random calls
        blocks.append(
            "".join(
                f"1,Nombre{rng.randrange(1000)},Apellido {rng.randrange(1000)},{rng.randrange(10**7, 45 * 10**6)},"
                f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 10)},{rng.randrange(10_000)}\n"
                for _ in range(block_rows)
            ).encode()
        )
    with open(data_dir / "bets.csv", "wb") as f:
        for i in range(bets // block_rows):
            f.write(blocks[i % len(blocks)])
        size = f.tell()
    (data_dir / "ledger.jsonl").write_bytes(
        orjson.dumps({"a": 1, "n": bets, "h": "bench", "k": None, "end": size}) + b"\n"
    )
    for name in ("done.json", "done.log", "winners.json"):
        (data_dir / name).unlink(missing_ok=True)
    return size


def measure(data_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.draw", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    from app.domain import WINNING_NUMBER
    from app.store.files import BETS, FileStore, round_dir
    from bench.proc import status_bytes

    data_dir = Path(sys.argv[1])
    store = FileStore(data_dir, agencies=1, winning_number=WINNING_NUMBER)
    started = time.perf_counter()
    receipt = store.mark_done(1)
    seconds = time.perf_counter() - started
    winners = len(store.winners(1) or [])
    # VmHWM, not ru_maxrss: after fork+exec, ru_maxrss can still hold the parent's peak.
    peak = status_bytes(os.getpid(), "VmHWM")
    print(
        json.dumps(
            {
                "drawn": receipt.drawn,
                "seconds": seconds,
                "winners": winners,
                "peak_rss_mb": peak / 2**20,
                # the store took the one-round layout over into rounds/0001/ when it opened
                "file_mb": os.path.getsize(round_dir(data_dir, 1) / BETS) / 2**20,
            }
        )
    )


if __name__ == "__main__":
    main()
