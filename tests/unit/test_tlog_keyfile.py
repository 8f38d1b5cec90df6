"""The log's key file: made with mode 0600, never over another file; refused when others may
read or change it; `python -m tlog keygen|vkey`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tlog import keyfile, note

ROOT = Path(__file__).parents[2]


def test_a_new_key_is_0600_and_loads_back(tmp_path):
    path = tmp_path / "log.key"
    old_umask = os.umask(0)  # even a permissive umask does not widen it
    try:
        signer = keyfile.write_new_key(path, "lottery.example/log")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == signer.skey() + "\n"
    assert keyfile.load_signer(path) == signer
    assert signer.skey().startswith("PRIVATE+KEY+lottery.example/log+")
    with pytest.raises(FileExistsError):
        keyfile.write_new_key(path, "lottery.example/log")
    assert keyfile.load_signer(path) == signer  # untouched


@pytest.mark.parametrize("mode", [0o604, 0o644, 0o606, 0o620, 0o660, 0o601, 0o666])
def test_a_key_others_may_read_or_change_is_refused(tmp_path, mode):
    path = tmp_path / "log.key"
    keyfile.write_new_key(path, "log")
    path.chmod(mode)
    with pytest.raises(keyfile.KeyFileError, match=f"mode {mode:04o}"):
        keyfile.load_signer(path)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_a_key_for_its_owner_and_group_is_read(tmp_path, mode):
    path = tmp_path / "log.key"
    signer = keyfile.write_new_key(path, "log")
    path.chmod(mode)
    assert keyfile.load_signer(path) == signer


def test_what_is_not_a_key_file_is_refused(tmp_path):
    with pytest.raises(keyfile.KeyFileError, match="cannot open"):
        keyfile.load_signer(tmp_path / "missing")
    real = tmp_path / "real.key"
    keyfile.write_new_key(real, "log")
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(keyfile.KeyFileError, match="cannot open"):
        keyfile.load_signer(link)  # no symlink followed to some other file
    with pytest.raises(keyfile.KeyFileError, match="not a regular file"):
        keyfile.load_signer(tmp_path)
    verifier_only = tmp_path / "vkey"
    verifier_only.write_text(keyfile.load_signer(real).verifier().vkey() + "\n")
    verifier_only.chmod(0o600)
    with pytest.raises(keyfile.KeyFileError, match="does not hold a signer key"):
        keyfile.load_signer(verifier_only)
    two_lines = tmp_path / "two"
    two_lines.write_text(real.read_text() * 2)
    two_lines.chmod(0o600)
    with pytest.raises(keyfile.KeyFileError, match="does not hold a signer key"):
        keyfile.load_signer(two_lines)


def run_tlog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlog", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_keygen_and_vkey_commands(tmp_path):
    path = tmp_path / "log.key"
    made = run_tlog("keygen", "lottery.example/log", str(path))
    assert made.returncode == 0, made.stderr
    vkey = made.stdout.strip()
    assert note.Verifier.from_key(vkey) == keyfile.load_signer(path).verifier()
    shown = run_tlog("vkey", str(path))
    assert (shown.returncode, shown.stdout.strip()) == (0, vkey)
    again = run_tlog("keygen", "lottery.example/log", str(path))
    assert again.returncode == 1 and "File exists" in again.stderr
    bad_name = run_tlog("keygen", "has space", str(tmp_path / "other.key"))
    assert bad_name.returncode == 1 and "key name" in bad_name.stderr
    assert not (tmp_path / "other.key").exists()
    path.chmod(0o644)
    refused = run_tlog("vkey", str(path))
    assert refused.returncode == 1 and "chmod 600" in refused.stderr


def test_importing_tlog_loads_neither_cryptography_nor_the_app():
    """The uploader imports tlog: its start-up must not pay for cryptography until it verifies."""
    code = (
        "import sys; import tlog.merkle, tlog.note, tlog.checkpoint, tlog.leaves, tlog.draw, tlog.keyfile; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'app', 'client')); "
        "print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
