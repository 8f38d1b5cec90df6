"""The uploader (``python -m client``) as its own process, the way an agency runs it.

One place for what every test of the uploader needs: the command, the repository as working
directory, text pipes, and an environment without this shell's ``LOTTERY_*`` variables, so that
only what the test passes counts (no token, server or database URL leaks in from the runner).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import NamedTuple

from devtools.server import ROOT


def uploader_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``LOTTERY_*`` settings, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LOTTERY_")}, **(extra or {})}


def uploader(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """``python -m client ARGS`` started; stdout and stderr captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        env=uploader_env(env),
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
