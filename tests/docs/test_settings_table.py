"""The settings tables are the settings' own: generated from app/settings.py.

The full table lives in docs/operations.md: a setting added, removed or reworded there fails
this test until the table is regenerated with
``python -m devtools.settings_table --write docs/operations.md``. The README's short table
holds a few of its rows, each exactly as generated.
"""

from __future__ import annotations

import subprocess
import sys

from app.settings import Settings
from devtools import settings_table
from devtools.server import ROOT

FULL_TABLE = ROOT / "docs" / "operations.md"


def test_the_docs_hold_the_generated_table():
    table = settings_table.between_markers(FULL_TABLE.read_text(encoding="utf-8"))
    assert table is not None, f"{FULL_TABLE.name} lost its settings-table markers"
    assert table == settings_table.render(), "regenerate: python -m devtools.settings_table --write docs/operations.md"


def test_the_readme_rows_are_generated_rows():
    """The README's short table: the header and some rows, each one exactly as the full table has it."""
    generated = settings_table.render().splitlines()
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    rows = [line for line in readme if line.startswith("| `LOTTERY_")]
    assert len(rows) >= 3, "the README lost its settings table"
    assert generated[0] in readme and generated[1] in readme
    for row in rows:
        assert row in generated, f"README row differs from the generated one (docs/operations.md): {row}"
    assert "docs/operations.md#settings" in "\n".join(readme)  # the link to the full table


def test_every_setting_has_a_row_and_a_description():
    table = settings_table.render()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description for the settings table"
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
