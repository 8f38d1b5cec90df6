"""The uploader an agency installs (issue 13): one file, run by a bare Python, far from the repository."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from client.agency_tool import build
from client.generate import generate
from devtools.server import Server
from tests.helpers import expected_rows, stored_rows

# A Python with nothing of the project: isolated (-I: no user site, no PYTHONPATH, no cwd on the
# path) and without site-packages (-S), so only the standard library and the .pyz can be imported.
BARE_PYTHON = [sys.executable, "-I", "-S"]


@pytest.fixture(scope="module")
def agency_tool(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("agency-tool")
    built = build(out=where / "dist" / "lottery-agency.pyz", work=where / "work")
    # The agency gets one file, somewhere that is not the repository.
    machine = tmp_path_factory.mktemp("agency-machine")
    return Path(shutil.copy(built, machine / "lottery-agency.pyz"))


def test_the_bare_python_has_none_of_the_uploaders_dependencies() -> None:
    for module in ("httpx", "httpcore", "h11", "anyio", "idna", "certifi", "yaml", "tqdm", "client"):
        probe = subprocess.run([*BARE_PYTHON, "-c", f"import {module}"], capture_output=True, cwd="/")
        assert probe.returncode == 1, module


def test_the_bundle_holds_no_compiled_extension(agency_tool: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(agency_tool).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    for name in (
        "client/__main__.py",
        "tlog/ed25519.py",
        "httpx/__init__.py",
        "httpcore/__init__.py",
        "h11/__init__.py",
    ):
        assert name in names
    assert "anyio/__init__.py" in names and "yaml/__init__.py" in names and "certifi/cacert.pem" in names
    assert not [n for n in names if n.startswith(("app/", "devtools/", "tests/"))]  # only the uploader


def test_an_agency_runs_a_round_with_the_single_file(agency_tool: Path, tmp_path: Path) -> None:
    machine = agency_tool.parent
    files = dict(enumerate(generate(machine, agencies=2, bets=3_000, seed=21), 1))
    # Agency 2 keeps the course's YAML config file: the bundled PyYAML reads it in pure Python.
    (machine / "config.yaml").write_text("agency: 2\nfile: agency-2.csv\nbatch:\n  maxAmount: 700\n")
    with Server(tmp_path / "data", workers=2, agencies=2) as server:
        procs = [
            subprocess.Popen(
                [*BARE_PYTHON, agency_tool.name, "run", "--agency", "1", "--file", "agency-1.csv", "--json"],
                cwd=machine,
                env={"LOTTERY_SERVER": server.url, "PATH": "/usr/bin:/bin"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            subprocess.Popen(
                [*BARE_PYTHON, str(agency_tool), "run", "--config", "config.yaml", "--server", server.url, "--json"],
                cwd=machine,
                env={"PATH": "/usr/bin:/bin"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        ]
        results = [p.communicate(timeout=120) for p in procs]
        for proc, (_out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err
            assert "action: consulta_ganadores | result: success" in err
        assert [json.loads(out)["agency"] for out, _ in results] == [1, 2]
        assert stored_rows(server.data_dir) == expected_rows(files)
    help_text = subprocess.run([*BARE_PYTHON, str(agency_tool), "--help"], capture_output=True, text=True, cwd="/")
    assert help_text.stdout.startswith("usage: lottery-agency.pyz")


def test_the_single_file_checks_the_logs_signatures_without_cryptography(agency_tool: Path) -> None:
    """verify's Ed25519 in the bundle: the pure-Python fallback (cryptography is not pure Python)."""
    from tests.unit.test_tlog_note import PETER_SIG, PETER_VKEY, TEXT

    probe = (
        f"import sys; sys.path.insert(0, {str(agency_tool)!r})\n"
        "from tlog import note\n"
        f"key = note.Verifier.from_key({PETER_VKEY!r})\n"
        f"print(note.open_note({(TEXT + chr(10) + PETER_SIG).encode()!r}, [key]).text == {TEXT!r})\n"
        f"bad = {(TEXT.upper() + chr(10) + PETER_SIG).encode()!r}\n"
        "try:\n    note.open_note(bad, [key])\nexcept note.InvalidSignature:\n    print('refused')\n"
    )
    done = subprocess.run([*BARE_PYTHON, "-c", probe], capture_output=True, text=True, cwd="/", timeout=60)
    assert (done.returncode, done.stdout) == (0, "True\nrefused\n"), done.stderr
    usage = subprocess.run(
        [*BARE_PYTHON, str(agency_tool), "verify", "--help"], capture_output=True, text=True, cwd="/"
    )
    assert usage.returncode == 0 and "--log-key" in usage.stdout


def test_the_single_file_trusts_a_private_ca_over_https(agency_tool: Path, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    from tests.integration.test_uploader_tls import TlsServer

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    (path,) = generate(agency_tool.parent / "tls", agencies=1, bets=500, seed=22)
    server = TlsServer(
        tmp_path / "data",
        workers=2,
        agencies=1,
        cert=tmp_path / "cert.pem",
        key=tmp_path / "key.pem",
        cacert=tmp_path / "ca.pem",
    )
    with server:
        proc = subprocess.run(
            [
                *BARE_PYTHON,
                str(agency_tool),
                "run",
                "--agency",
                "1",
                "--file",
                str(path),
                "--server",
                server.url,
                "--cacert",
                str(tmp_path / "ca.pem"),
                "--token",
                "not-checked-by-this-server",
            ],
            capture_output=True,
            text=True,
            cwd=agency_tool.parent,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert stored_rows(server.data_dir) == expected_rows({1: path})
