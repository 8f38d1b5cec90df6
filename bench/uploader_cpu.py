"""CPU per bet of the uploader, all in: one ``python -m client run`` process, start to exit.

Method: a fresh server (2 workers, one agency) per run, so every run uploads the whole file,
says done and reads its winners; the uploader's own user + system CPU comes from
``getrusage(RUSAGE_CHILDREN)`` taken around the waited-for process (the server is not
waited for, so it is not counted). Median of ``runs``. The start-up figure is the same
measure for ``python -m client run`` on a one-bet file. The client package is byte-compiled first,
as an installed one is.

The floor it is compared with, measured the same way: ``python -c pass`` (the interpreter) and
``python -c "import httpx, httpcore"`` with the optional modules the uploader keeps out
(client/__main__.py ``UNUSED_OPTIONAL_MODULES``). No uploader built on httpx can use less CPU
than that second figure, whatever the file: on this machine it is already above 0.5 µs/bet for
a 100k-bet file (issue 15), which is why that target is not met while httpx stays.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.proc import rusage_seconds
from devtools.server import ROOT, Server


def _children_cpu() -> float:
    return rusage_seconds(resource.RUSAGE_CHILDREN)


def uploader_cpu_seconds(path: Path, where: Path, *, args: tuple[str, ...] = (), root: Path = ROOT) -> float:
    """The CPU seconds of one uploader process that uploads ``path`` to a fresh server.

    ``root`` is the directory whose ``client`` package runs (another checkout, to compare).
    """
    with Server(where / "data", workers=2, agencies=1, log_path=where / "server.log") as server:
        before = _children_cpu()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "client",
                "run",
                "--agency",
                "1",
                "--file",
                str(path),
                "--server",
                server.url,
                "--quiet",
                "--json",
                *args,
            ],
            cwd=root,
            capture_output=True,
        )
        cpu = _children_cpu() - before
    if proc.returncode != 0:
        raise RuntimeError(f"uploader exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return cpu


def python_cpu_seconds(code: str) -> float:
    """The CPU seconds of ``python -c code`` (the interpreter's start-up and exit included)."""
    before = _children_cpu()
    subprocess.run([sys.executable, "-c", code], check=True)
    return _children_cpu() - before


def floor_seconds(runs: int) -> tuple[float, float]:
    """(bare interpreter, interpreter + ``import httpx, httpcore`` as the uploader imports them): medians.

    As the uploader does: its garbage-collector thresholds, its optional modules kept out, and
    ``os._exit`` at the end (no interpreter teardown)."""
    from client.__main__ import GC_THRESHOLDS, UNUSED_OPTIONAL_MODULES

    bare = "import os\nos._exit(0)"
    imports = (
        f"import gc, os, sys\ngc.set_threshold(*{GC_THRESHOLDS!r})\n"
        f"for name in {UNUSED_OPTIONAL_MODULES!r}: sys.modules[name] = None\nimport httpx, httpcore\nos._exit(0)"
    )
    runs = max(runs, 10)  # tens of milliseconds each: more runs for a steadier median
    return (
        statistics.median(python_cpu_seconds(bare) for _ in range(runs)),
        statistics.median(python_cpu_seconds(imports) for _ in range(runs)),
    )


def bench_uploader_cpu(runs: int = 5, bets: int = 100_000, root: Path = ROOT) -> dict:
    import compileall

    from client.generate import generate

    # As installed: with bytecode, even where PYTHONDONTWRITEBYTECODE keeps Python from writing it.
    compileall.compile_dir(root / "client", quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-uploader-cpu-") as tmp:
        work = Path(tmp)
        (big,) = generate(work / "big", 1, bets, seed=11)
        (one,) = generate(work / "one", 1, 1, seed=11)
        total = statistics.median(uploader_cpu_seconds(big, work / f"big-{i}", root=root) for i in range(runs))
        start = statistics.median(uploader_cpu_seconds(one, work / f"one-{i}", root=root) for i in range(runs))
    python, with_httpx = floor_seconds(runs)
    row = {
        "bets": bets,
        "runs": runs,
        "cpu_s": total,
        "us_per_bet": total / bets * 1e6,
        "startup_cpu_s": start,
        "us_per_bet_after_startup": (total - start) / bets * 1e6,
        "python_cpu_s": python,
        "python_httpx_cpu_s": with_httpx,
    }
    print(
        f"  uploader, {bets:,}-bet file: {row['us_per_bet']:.2f} us/bet all in "
        f"({total:.3f} s CPU; start-up {start:.3f} s; {row['us_per_bet_after_startup']:.2f} us/bet after it)",
        flush=True,
    )
    print(
        f"  floor: python alone {python:.3f} s, python + import httpx, httpcore {with_httpx:.3f} s "
        f"({with_httpx / bets * 1e6:.2f} us/bet on this file before reading a byte)",
        flush=True,
    )
    return row


if __name__ == "__main__":
    # python -m bench.uploader_cpu [RUNS [CLIENT_ROOT]]: CLIENT_ROOT holds another release's client/ to compare
    bench_uploader_cpu(
        int(sys.argv[1]) if len(sys.argv) > 1 else 5, root=Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT
    )
