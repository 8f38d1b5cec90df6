"""The README's commands run as written, and answer what the README says they answer.

Blocks marked ``<!-- readme-test: NAME -->`` are extracted and run with bash, in a folder
laid out like the checkout (its files linked in, the course dataset at ../shared/dataset),
after the README's own venv activation, against a real gunicorn on a free port: the README
reads the server's address from ``$LOTTERY_SERVER`` (``make serve``'s by default), which is
the one thing the test sets. Each ``#=> text`` line is an answer the block must print
(``...`` stands for anything), in order. Then the stored round is checked exactly: the
dataset round stores 78,697 bets with 2, 3, 3, 2 and 0 winners; the API walkthrough stores
its bets once, even when pasted twice.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from devtools.server import ROOT, Server
from tests.conftest import DATASET_COUNTS
from tests.helpers import round_file

README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```sh\n(.*?)```", re.S)
WINNING = 7574
DATASET_WINNERS = {1: 2, 2: 3, 3: 3, 4: 2, 5: 0}


def blocks() -> dict[str, str]:
    found = MARKER.findall(README.read_text(encoding="utf-8"))
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), names
    return dict(found)


def venv_activation() -> str:
    """The README's own line for activating the venv (the commands below it assume it)."""
    line = next(line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(". .venv/"))
    return line.split("#", 1)[0].strip()


def expected_answers(block: str) -> list[str]:
    parts: list[str] = []
    for line in block.splitlines():
        if line.startswith("#=> "):
            parts += [p for p in line[4:].split("...") if p]
    return parts


def assert_answers_in_order(output: str, block: str) -> None:
    position = 0
    for part in expected_answers(block):
        found = output.find(part, position)
        assert found >= 0, f"the README says the answer contains {part!r}; after position {position} of:\n{output}"
        position = found + len(part)


@pytest.fixture
def checkout(tmp_path: Path, dataset: Path) -> Path:
    """A folder laid out like the checkout, with the dataset where the README says: ../shared/dataset."""
    if shutil.which("curl") is None:
        pytest.fail("curl is required by the README's API examples (CI must install it)")
    here = tmp_path / "lottery"
    here.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {"data", ".git", ".pytest_cache"}:
            (here / entry.name).symlink_to(entry)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "dataset").symlink_to(dataset)
    return here


def shell(checkout: Path, server_url: str, script: str) -> subprocess.CompletedProcess:
    """Bash in the checkout, as a newcomer's shell: no venv on PATH until the README activates it."""
    venv_bin = str(ROOT / ".venv" / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != Path(venv_bin))
    env = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"} and not k.startswith("LOTTERY")
    }
    env.update(PATH=path, LOTTERY_SERVER=server_url)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{venv_activation()}\n{script}"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def run_block(checkout: Path, server: Server, name: str) -> str:
    block = blocks()[name]
    done = shell(checkout, server.url, block)
    assert done.returncode == 0, f"README block {name!r} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert_answers_in_order(done.stdout, block)
    return done.stdout


def round_line(server: Server) -> str:
    lines = [line for line in server.log().splitlines() if "action: ronda |" in line]
    assert lines, server.log()
    return lines[-1]


def winners_in(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row[2] for row in csv.reader(f) if int(row[4]) == WINNING]


def stored_rows(data: Path) -> list[list[str]]:
    with open(round_file(data, "bets.csv"), newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_the_marked_blocks_exist():
    assert set(blocks()) == {"round", "start-over", "api"}
    assert venv_activation() == ". .venv/bin/activate"


def test_every_upload_example_carries_an_idempotency_key():
    """Any curl or httpie upload in the README, tested or not, is safe to paste twice."""
    text = README.read_text(encoding="utf-8").replace("\\\n", " ")
    uploads = [line for line in text.splitlines() if "/bets" in line and re.search(r"\b(curl|http POST)\b", line)]
    assert uploads
    for line in uploads:
        if "12a" in line or "@-" in line:  # the invalid chunk: a 422 stores nothing, whatever the key
            continue
        assert "Idempotency-Key" in line, line
    commands_by_key: dict[str, set[str]] = {}
    for line in uploads:  # one key, one command: a key is never reused for other bets
        for key in re.findall(r"Idempotency-Key:\s*([\w.-]+)", line):
            commands_by_key.setdefault(key, set()).add(re.sub(r"^\s*curl -si? ", "curl ", line))
    assert commands_by_key and all(len(c) == 1 for c in commands_by_key.values()), commands_by_key


@pytest.mark.long  # a whole round by hand, as the README says: `make test-long`
def test_the_readme_runs_as_written(checkout: Path, dataset: Path):
    data = checkout / "data"

    # Run a round by hand: five uploaders with the course's files.
    with Server(data, workers=3, agencies=5, log_path=checkout.parent / "round.log") as server:
        assert "state: open | bets: 0 | done: 0/5 []" in round_line(server)
        output = run_block(checkout, server, "round")
        status = httpx.get(f"{server.url}/status").json()
        winners = {a: httpx.get(f"{server.url}/agencies/{a}/winners").json()["winners"] for a in DATASET_WINNERS}
        draws = [line for line in server.log().splitlines() if "action: sorteo" in line]
    assert status == {"expected": 5, "done": [1, 2, 3, 4, 5], "drawn": True, "bets": sum(DATASET_COUNTS.values())}
    assert status["bets"] == 78_697
    assert {a: len(w) for a, w in winners.items()} == DATASET_WINNERS
    for agency, documents in winners.items():
        assert sorted(documents) == sorted(winners_in(dataset / f"agency-{agency}.csv"))
    assert set(winners[3]) <= set(output.split())  # `python -m client winners --agency 3` printed them
    assert len(draws) == 1 and "apuestas: 78697 | cant_ganadores: 10" in draws[0], draws
    assert len(stored_rows(data)) == 78_697

    # A restart on that data says the round there is drawn, and how to start over.
    with Server(data, workers=2, agencies=5, log_path=checkout.parent / "restart.log") as server:
        line = round_line(server)
    assert "id: 1 | state: drawn | bets: 78697 | done: 5/5 [1, 2, 3, 4, 5]" in line, line
    assert "opens the next one with POST /rounds" in line

    # Start over: the README's command with the server stopped, then a new round.
    moved = shell(checkout, "http://127.0.0.1:1", blocks()["start-over"])
    assert moved.returncode == 0, moved.stderr
    [old] = [p for p in checkout.iterdir() if p.name.startswith("data.")]
    assert len(stored_rows(old)) == 78_697 and not data.exists()

    # The API walkthrough, on that new round; then pasted again, as a newcomer might.
    with Server(data, workers=3, agencies=5, log_path=checkout.parent / "api.log") as server:
        assert "state: open | bets: 0" in round_line(server)
        run_block(checkout, server, "api")
        status = httpx.get(f"{server.url}/status").json()
        again = shell(checkout, server.url, blocks()["api"])
        status_again = httpx.get(f"{server.url}/status").json()
        agency_1 = httpx.get(f"{server.url}/agencies/1/winners").json()["winners"]
    expected_bets = 1 + DATASET_COUNTS[1]  # Ana's JSON bet and agency-1.csv; the invalid chunk stores nothing
    assert status == {"expected": 5, "done": [1, 2, 3, 4, 5], "drawn": True, "bets": expected_bets}
    assert again.returncode == 0, again.stderr
    assert status_again == status, again.stdout  # pasted twice, stored once
    assert sorted(agency_1) == sorted(winners_in(dataset / "agency-1.csv"))  # Ana's 1234 does not win
    rows = stored_rows(data)
    assert len(rows) == expected_bets
    assert {row[0] for row in rows} == {"1"}
    assert ["1", "Ana", "Gómez", "01234567", "1990-01-01", "1234"] in rows
    assert json.loads(json.dumps(agency_1)) == agency_1
