"""The Makefile's install steps, as GNU make plans them on a fresh clone (``make -n``, nothing
installed): ``make demo`` installs only the runtime (requirements-runtime.txt, what the Docker
image has); the test toolchain comes with ``make test`` (issue 25.15), also after a demo."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.server import ROOT

RUNTIME = "-r requirements-runtime.txt"
EVERYTHING = "-r requirements.txt"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "requirements.txt", "requirements-runtime.txt"):
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def plan(clone: Path, target: str) -> list[str]:
    """The pip installs ``make TARGET`` would run, in order."""
    out = subprocess.run(["make", "-n", target], cwd=clone, capture_output=True, text=True, check=True).stdout
    return [line.split("pip install", 1)[1] for line in out.splitlines() if "pip install" in line]


def pretend_run(clone: Path, target: str) -> None:
    """What running ``make TARGET`` leaves behind: a venv and the stamps its installs touch."""
    out = subprocess.run(["make", "-n", target], cwd=clone, capture_output=True, text=True, check=True).stdout
    (clone / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    for line in out.splitlines():
        if line.startswith("touch "):
            (clone / line.split()[1]).touch()


def test_demo_installs_the_runtime_only(clone: Path) -> None:
    installs = plan(clone, "demo")
    assert len(installs) == 1 and installs[0].rstrip().endswith(RUNTIME), installs
    assert not any(EVERYTHING in i for i in installs)


def test_test_installs_everything_on_a_fresh_clone_and_after_a_demo(clone: Path) -> None:
    assert any(i.rstrip().endswith(EVERYTHING) for i in plan(clone, "test"))
    pretend_run(clone, "demo")
    assert plan(clone, "demo") == []  # installed once
    after_demo = plan(clone, "test")
    assert len(after_demo) == 1 and after_demo[0].rstrip().endswith(EVERYTHING), after_demo
    pretend_run(clone, "test")
    assert plan(clone, "test") == [] and plan(clone, "demo") == []
