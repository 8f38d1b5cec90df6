"""The parts of a ``/bets`` request, each timed alone: where the floor of this design is.

    python -m bench.server_parts          # about 15 s

Each figure is this process's CPU (user + system, ``resource.getrusage``) over many calls,
divided by the calls: per 5,000-bet chunk for the parts that grow with the chunk (shown per
bet too), per call for the fixed ones. The body is ``bench.server_cpu``'s. What a whole
request costs in a real worker is ``bench.server_cpu``; this says what it is made of.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.proc import rusage_seconds

CHUNK = 5000


def cpu_per_call(call: Callable[[], object], calls: int) -> float:
    """µs of this process's CPU per call of ``call`` (after one warm-up call)."""
    call()
    before = rusage_seconds()
    for _ in range(calls):
        call()
    return (rusage_seconds() - before) / calls * 1e6


def _hops(calls: int) -> tuple[float, float]:
    """A no-op sent to a thread and awaited: anyio's (Starlette's run_in_threadpool) and asyncio's."""
    import concurrent.futures

    import anyio.to_thread
    import uvloop

    def nothing() -> None:
        return None

    async def measure() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(4)
        figures = []
        for hop in (lambda: anyio.to_thread.run_sync(nothing), lambda: loop.run_in_executor(pool, nothing)):
            for _ in range(100):
                await hop()
            before = rusage_seconds()
            for _ in range(calls):
                await hop()
            figures.append((rusage_seconds() - before) / calls * 1e6)
        pool.shutdown()
        return figures[0], figures[1]

    return uvloop.run(measure())


def measure(calls: int = 200, small_calls: int = 3000) -> dict[str, float]:
    import filelock

    from app.csv_fast import _VALIDATOR, _has_long_name, latest_birthdate, parse_plain
    from app.store import Chunk, UploadSpan, body_digest
    from app.store.files import FileStore
    from app.store.lock import ProcessLock
    from bench.server_cpu import chunk_bodies

    body = chunk_bodies(CHUNK, CHUNK)[0]
    latest = latest_birthdate()
    parsed = parse_plain(body, 3)
    assert parsed is not None
    figures = {
        "validator (RE2 fullmatch)": cpu_per_call(lambda: _VALIDATOR.fullmatch(body, latest), calls),
        "long-name check": cpu_per_call(lambda: _has_long_name(body), calls),
        "rows built (validator and check included)": cpu_per_call(lambda: parse_plain(body, 3), calls),
        "sha256 of a chunk": cpu_per_call(lambda: hashlib.sha256(parsed[0]).hexdigest(), calls),
    }
    with tempfile.TemporaryDirectory(prefix="bench-parts-") as tmp:
        file_lock = filelock.FileLock(os.path.join(tmp, "a.lock"), preserve_lock_file=True)
        process_lock = ProcessLock(os.path.join(tmp, "b.lock"), timeout=5)

        def file_lock_turn() -> None:
            file_lock.acquire()
            file_lock.release()

        def process_lock_turn() -> None:
            process_lock.acquire()
            process_lock.release()

        figures["lock turn: filelock.FileLock"] = cpu_per_call(file_lock_turn, small_calls)
        figures["lock turn: the store's (filelock.lock_descriptor)"] = cpu_per_call(process_lock_turn, small_calls)
        fd = os.open(os.path.join(tmp, "append"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)

        def append_and_sync() -> None:
            os.write(fd, b"x" * 60)
            os.fdatasync(fd)

        figures["append + fdatasync (a small write)"] = cpu_per_call(append_and_sync, small_calls // 3)
        os.close(fd)
        store = FileStore(Path(tmp) / "data", agencies=10, winning_number=7574)
        line = b"Santiago,Lorca,30904465,1999-03-17,7577\n"
        counter = iter(range(10**9))

        def commit() -> None:
            i = next(counter)
            store.append_chunk(Chunk.build(1, b"1," + line, 1, f"k{i}", UploadSpan("u", i), body_digest(line)))

        figures["store commit of a one-bet chunk (lock, 2 appends and fdatasyncs)"] = cpu_per_call(
            commit, small_calls // 3
        )
        store.close()
    anyio_hop, asyncio_hop = _hops(small_calls)
    figures["thread hop: anyio (run_in_threadpool)"] = anyio_hop
    figures["thread hop: loop.run_in_executor"] = asyncio_hop
    return figures


PER_CHUNK = ("validator", "long-name", "rows built", "sha256")


def main() -> dict[str, float]:
    figures = measure()
    for name, us in figures.items():
        per_bet = f"  = {us / CHUNK * 1000:5.1f} ns/bet" if name.startswith(PER_CHUNK) else ""
        unit = f"per {CHUNK:,}-bet chunk" if per_bet else "per call"
        print(f"  {name:68s} {us:8.1f} µs {unit}{per_bet}")
    return figures


if __name__ == "__main__":
    main()
