"""``--help`` of the server-side commands a newcomer runs first (issue 25.12): every option is
described, and asking for help never does the work (make-tls.sh took ``--help`` as its folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.server import ROOT


def test_tokens_help_describes_every_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.tokens", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    # argparse prints an option's help after its name; an option without help stands alone on its line
    for option in ("--agencies N", "--out DIR", "--no-operator"):
        assert re.search(rf"^  {re.escape(option)} +\S", proc.stdout, re.M), proc.stdout
    assert "LOTTERY_AGENCIES" in proc.stdout  # the count must match the server's
    assert "secrets/operator.token" in proc.stdout  # where the operator's page token is


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_make_tls_help_prints_usage_and_writes_nothing(tmp_path: Path, flag: str) -> None:
    proc = subprocess.run(
        [str(ROOT / "deploy" / "make-tls.sh"), flag], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ") and "DIR [NAME...]" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # no folder named --help, no keys
