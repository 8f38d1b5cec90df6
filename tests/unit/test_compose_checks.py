"""./generar-compose.sh refuses to write a compose file whose mounted files are missing.

Compose would otherwise start and fail later (a secret file that does not exist) or, worse,
bind-mount an empty directory where an agency's CSV should be. The script names each
missing file, says how to create it, and writes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.compose import build_compose, mounted_files

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "generar-compose.sh"


def generate(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(SCRIPT), str(out), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_every_mounted_file_is_listed():
    assert mounted_files(build_compose(2)) == [
        "./secrets/tokens.json",
        "./secrets/tls.crt",
        "./secrets/tls.key",
        "./secrets/tls-ca.crt",
        "./secrets/log.key",  # the transparency log's signing key (a secret, mode 0600)
        "./secrets/agency-1.token",
        "./secrets/agency-2.token",
        "./.data/agency-1.csv",
        "./.data/agency-2.csv",
        "./deploy/prometheus.yml",  # the optional Prometheus service's config, shipped in the repository
    ]


@settings(max_examples=12, deadline=None)
@given(agencies=st.integers(1, 6), data=st.data())
def test_missing_files_are_named_and_nothing_is_written(tmp_path_factory, agencies, data):
    folder = tmp_path_factory.mktemp("compose")
    files = mounted_files(build_compose(agencies))
    present = data.draw(st.sets(st.sampled_from(files)))
    for name in present:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    out = folder / "compose.yaml"
    proc = generate(out, str(agencies))
    missing = [name for name in files if name not in present]
    if not missing:
        assert proc.returncode == 0, proc.stderr
        assert out.exists()
        return
    assert proc.returncode == 1
    assert not out.exists()
    named = [line.strip() for line in proc.stderr.splitlines() if line.startswith("  ./")]
    assert named == missing
    assert proc.stderr.startswith("error: ")
    assert f"python -m app.tokens --agencies {agencies} --out secrets" in proc.stderr


def test_no_check_writes_the_file_anyway(tmp_path):
    out = tmp_path / "compose.yaml"
    proc = generate(out, "3", "--no-check")
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_the_check_is_relative_to_the_compose_file_not_the_current_directory(tmp_path):
    folder = tmp_path / "deploy-here"
    for name in mounted_files(build_compose(1)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    proc = generate(folder / "compose.yaml", "1")  # cwd is the repository, which has none of them
    assert proc.returncode == 0, proc.stderr
