"""The README's settings table is the settings' own: generated from app/settings.py.

A setting added, removed or reworded there fails this test until the table is regenerated
with ``python -m devtools.settings_table --write README.md``.
"""

from __future__ import annotations

import subprocess
import sys

from app.settings import Settings
from devtools import settings_table
from devtools.server import ROOT


def test_readme_holds_the_generated_table():
    table = settings_table.between_markers((ROOT / "README.md").read_text(encoding="utf-8"))
    assert table is not None, "README.md lost its settings-table markers"
    assert table == settings_table.render(), "regenerate: python -m devtools.settings_table --write README.md"


def test_every_setting_has_a_row_and_a_description():
    table = settings_table.render()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description for the README"
        assert f"| `LOTTERY_{name.upper()}` |" in table


def test_write_replaces_only_the_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{settings_table.BEGIN}\n| stale |\n{settings_table.END}\nafter\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "devtools.settings_table", "--write", str(readme)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = readme.read_text(encoding="utf-8")
    assert text == f"before\n{settings_table.BEGIN}\n{settings_table.render()}{settings_table.END}\nafter\n"
