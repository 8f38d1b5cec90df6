"""The uploader (``python -m client``) as its own process, the way an agency runs it.

One place for what every test of the uploader needs: the command, the repository as working
directory, text pipes, and an environment without this shell's ``LOTTERY_*`` variables, so that
only what the test passes counts (no token, server or database URL leaks in from the runner).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from devtools.server import ROOT


def uploader_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``LOTTERY_*`` settings, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LOTTERY_")}, **(extra or {})}


# The course's files (../shared) are read-only: an upload of one keeps its receipts (by default
# beside the bets file) in a temporary directory instead.
DATASET = (ROOT.parent / "shared" / "dataset").resolve()


def receipts_outside_dataset(args: tuple[str, ...], env: dict[str, str] | None) -> dict[str, str] | None:
    """``env``, plus a temporary receipts file when ARGS upload a file of the course's dataset."""
    if "--file" not in args or "--receipts" in args or "LOTTERY_RECEIPTS" in (env or {}):
        return env
    path = Path(args[args.index("--file") + 1]).resolve()
    if not path.is_relative_to(DATASET):
        return env
    return {
        **(env or {}),
        "LOTTERY_RECEIPTS": str(Path(tempfile.mkdtemp(prefix="receipts-")) / f"{path.name}.receipts.jsonl"),
    }


def uploader(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """``python -m client ARGS`` started; stdout and stderr captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        env=uploader_env(receipts_outside_dataset(args, env)),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


class Finished(NamedTuple):
    code: int
    out: str
    err: str


def run_uploader(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Finished:
    """``python -m client ARGS`` run to its end (killed, and the test failed, after ``timeout``)."""
    proc = uploader(*args, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"uploader {' '.join(args)} still running after {timeout}s:\n{err[-3000:]}") from None
    return Finished(proc.returncode, out, err)
