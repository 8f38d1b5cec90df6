"""Build ``dist/lottery-agency.pyz``: the uploader as one file an agency copies and runs.

    python -m client.agency_tool        # what `make agency-tool` runs

A zipapp (PEP 441) holding the ``client`` and ``tlog`` packages and their pure-Python
dependencies (client/requirements-agency.txt), run by any Python 3.11 with nothing else installed:
``python3 lottery-agency.pyz run --agency 1 --file agency-1.csv --server https://...``.
Nothing is installed on the agency's machine, so no generic package name lands in a shared
site-packages. Modules are stored with their 3.11 bytecode beside them, so starting does not
compile them (another Python version falls back to the sources).
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "client" / "requirements-agency.txt"
MAIN = """\
from client.__main__ import run_as_program

run_as_program(prog="lottery-agency.pyz")
"""
# Not needed at run time: the build itself, packaging metadata, C extensions (PyYAML's is optional).
LEFT_OUT = ("agency_tool.py", "requirements-agency.txt")


def build(out: Path = ROOT / "dist" / "lottery-agency.pyz", work: Path | None = None) -> Path:
    """Build the bundle at ``out``; ``work`` (a new directory) is where it is assembled, a temporary one by default."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="agency-tool-") as tmp:
            return build(out, Path(tmp) / "bundle")
    work.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-deps",
            "--only-binary=:all:",
            "--target",
            str(work),
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    for path in list(work.rglob("*")):
        if path.name.endswith((".so", ".pyd")) or path.name.endswith(".dist-info") or path.name == "bin":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.copytree(ROOT / "client", work / "client", ignore=shutil.ignore_patterns("__pycache__", *LEFT_OUT))
    # The log's checks (verify; the upload's salt). Its Ed25519 falls back to pure Python
    # (tlog/ed25519.py): cryptography is a compiled extension the bundle cannot carry.
    shutil.copytree(ROOT / "tlog", work / "tlog", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "__main__.py").write_text(MAIN)
    # Legacy-layout bytecode (module.pyc beside module.py) is what zipimport loads; unchecked hashes
    # because zip timestamps have a two-second resolution.
    compileall.compile_dir(work, quiet=1, legacy=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    out.parent.mkdir(parents=True, exist_ok=True)
    zipapp.create_archive(work, out, interpreter="/usr/bin/env python3", compressed=True)
    return out


if __name__ == "__main__":
    path = build()
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
