"""A data dir the server cannot use stops ``gunicorn -c gunicorn.conf.py`` (what ``make serve``
runs) with one line naming LOTTERY_DATA_DIR, before any worker starts (issue 25.4): a file, a
directory it may not read, a directory it may not write (under /proc)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from devtools.server import ROOT, free_port

NOBODY = 65534


def serve(data_dir: str, *, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "LOTTERY_DATA_DIR": data_dir,
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{free_port()} --workers 2",
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    if as_nobody:  # root reads and writes any directory: the check must be seen by an ordinary user
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def assert_refused(proc: subprocess.CompletedProcess[str], data_dir: str, why: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output and "Booting worker" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("lottery: invalid setting")]
    assert lines == [f"lottery: invalid setting: LOTTERY_DATA_DIR={data_dir!r}: {why}"], output


def test_a_file_as_data_dir_is_one_line() -> None:
    assert_refused(serve("README.md"), "README.md", "not a directory")


@pytest.fixture
def unreadable() -> Iterator[str]:
    """A directory its user may not list: mode 000 (owned by root, so nobody cannot either)."""
    parent = tempfile.mkdtemp()
    os.chmod(parent, 0o755)
    path = os.path.join(parent, "data")
    os.mkdir(path, 0)
    try:
        yield path
    finally:
        os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(parent)


def test_an_unreadable_data_dir_is_one_line(unreadable: str) -> None:
    proc = serve(unreadable, as_nobody=os.geteuid() == 0)
    assert_refused(proc, unreadable, "cannot read it: Permission denied")


@pytest.mark.parametrize(
    ("data_dir", "why"),
    [
        ("/proc", "cannot write in it: No such file or directory"),
        ("/proc/lottery", "cannot create it: No such file or directory"),
    ],
)
def test_a_data_dir_it_cannot_write_is_one_line(data_dir: str, why: str) -> None:
    assert_refused(serve(data_dir), data_dir, why)
