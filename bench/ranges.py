"""Cost per chunk of one long upload as its stored ranges grow (issue 9, item 6).

One upload sent in 1-bet chunks straight to ``FileStore.append_chunk`` (the decision taken
under the global lock, then the commit): ms per chunk over the first ``window`` chunks, and
over ``window`` more once ``chunks`` are stored. Flat means deciding a chunk does not scan the
upload's stored ranges. The data dir is on tmpfs (/dev/shm) when there is one, so the figure is
the CPU under the lock, not the disk's fsync.

    python -m bench.ranges [--chunks 30000] [--window 1000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from app.domain import WINNING_NUMBER
from app.store import Chunk, UploadSpan
from app.store.files import FileStore


def _chunk(line: int) -> Chunk:
    row = (1, f"Nombre {line}", "Apellido", str(10_000_000 + line), "1990-01-01", line % 10_000)
    return Chunk.from_rows(1, [row], upload=UploadSpan("one-long-upload", line), digest="0" * 64)


def _ms_per_chunk(store: FileStore, chunks: list[Chunk]) -> float:
    started = time.perf_counter()
    for chunk in chunks:
        store.append_chunk(chunk)
    return (time.perf_counter() - started) * 1000 / len(chunks)


def measure(chunks: int = 30_000, window: int = 1000) -> dict:
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="bench-ranges-", dir=shm if shm.is_dir() else None) as tmp:
        store = FileStore(Path(tmp), agencies=1, winning_number=WINNING_NUMBER)
        first = _ms_per_chunk(store, [_chunk(i) for i in range(window)])
        _ms_per_chunk(store, [_chunk(i) for i in range(window, chunks)])
        later = _ms_per_chunk(store, [_chunk(i) for i in range(chunks, chunks + window)])
        storage = "tmpfs" if Path(tmp).is_relative_to(shm) else "disk"
    return {
        "chunks_stored_before_last_window": chunks,
        "window": window,
        "ms_per_chunk_first": round(first, 3),
        "ms_per_chunk_after": round(later, 3),
        "storage": storage,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ranges", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=30_000)
    parser.add_argument("--window", type=int, default=1000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.chunks, args.window)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
