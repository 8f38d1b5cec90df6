"""The README's commands run as written, and answer what the README says they answer.

Blocks marked ``<!-- readme-test: NAME -->`` are extracted and run with bash, in a folder
laid out like a fresh clone (the checkout's files linked in, nothing the README's commands
write), after the README's own venv activation, against a real gunicorn on a free port: the
README reads the server's address from ``$LOTTERY_SERVER`` (``make serve``'s by default),
which is the one thing the test sets. Each ``#=> text`` line is an answer the block must
print (``...`` stands for anything), in order. The bets are the files the README's own
``generate`` block writes, never the course's dataset (a fresh clone has none). Then the
stored rounds are checked exactly: the round by hand stores every generated bet and draws
each file's winners; the API walkthrough stores its bets once, even when pasted twice; the
operator's commands open the rounds they say.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from base64 import b64decode
from pathlib import Path

import httpx
import pytest

from client.generate import generate
from devtools.server import ROOT, Server
from tests.helpers import round_file

README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```sh\n(.*?)```", re.S)
WINNING = 7574
# What the README's commands create in the checkout (and a newcomer's own run may have left in ROOT).
WRITTEN_BY_THE_README = {"data", "agencies", "secrets", ".data", "dist", ".git", ".pytest_cache"}
AGENCIES = 5
BETS = 20_000  # per agency: the README's generate block
DOCS = ROOT / "docs"


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
def checkout(tmp_path: Path) -> Path:
    """A folder laid out like a fresh clone: what the README's commands write is not linked in."""
    if shutil.which("curl") is None:
        pytest.fail("curl is required by the README's API examples (CI must install it)")
    here = tmp_path / "lottery"
    here.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in WRITTEN_BY_THE_README and not entry.name.startswith("data."):
            (here / entry.name).symlink_to(entry)
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


def stored_rows(data: Path, round_id: int) -> list[list[str]]:
    with open(round_file(data, "bets.csv", round_id), newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def generated_files(checkout: Path) -> dict[int, Path]:
    """The README's generate block, run in the checkout: its files, as the generator writes them."""
    done = shell(checkout, "http://127.0.0.1:1", blocks()["generate"])  # needs no server
    assert done.returncode == 0, done.stderr
    assert_answers_in_order(done.stdout, blocks()["generate"])
    files = {a: checkout / "agencies" / f"agency-{a}.csv" for a in range(1, AGENCIES + 1)}
    for path in generate(checkout.parent / "expected", AGENCIES, BETS, seed=1):
        assert (checkout / "agencies" / path.name).read_bytes() == path.read_bytes(), path.name
    return files


def rounds_of(server: Server, **headers: str) -> dict[int, dict]:
    listed = httpx.get(f"{server.url}/rounds", headers=headers).json()["rounds"]
    return {r["round"]: r for r in listed}


def test_the_marked_blocks_exist():
    assert set(blocks()) == {"generate", "round", "start-over", "api", "next-round", "tokens", "with-tokens"}
    assert venv_activation() == ". .venv/bin/activate"


def test_every_upload_example_carries_an_idempotency_key():
    """Any curl or httpie upload in the README or docs/, tested or not, is safe to paste twice."""
    pages = [README, *sorted(DOCS.glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages).replace("\\\n", " ")
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
def test_the_readme_runs_as_written(checkout: Path):
    data = checkout / "data"
    files = generated_files(checkout)
    winners_by_file = {a: winners_in(path) for a, path in files.items()}
    counts = [len(w) for w in winners_by_file.values()]
    total = sum(counts)

    # A round by hand: five uploaders with the generated files.
    with Server(data, workers=3, agencies=AGENCIES, log_path=checkout.parent / "round.log") as server:
        assert "state: open | bets: 0 | done: 0/5" in round_line(server)
        output = run_block(checkout, server, "round")
        status = httpx.get(f"{server.url}/status").json()
        winners = {a: httpx.get(f"{server.url}/agencies/{a}/winners").json()["winners"] for a in files}
        draws = [line for line in server.log().splitlines() if "action: sorteo" in line]
    assert status == {"expected": 5, "done_count": 5, "drawn": True, "bets": AGENCIES * BETS}
    assert {a: sorted(w) for a, w in winners.items()} == {a: sorted(w) for a, w in winners_by_file.items()}
    assert set(winners[3]) <= set(output.split())  # `python -m client winners --agency 3` printed them
    said = f"{', '.join(map(str, counts[:-1]))} and {counts[-1]} winners for agencies 1 to 5"
    assert said in README.read_text(encoding="utf-8").replace("\n", " ")  # the README's counts are these files'
    draw = f"action: sorteo | result: success | apuestas: {AGENCIES * BETS} | cant_ganadores: {total} | ronda: 1 | "
    assert len(draws) == 1 and f"{draw}numero_ganador: {WINNING}" in draws[0], draws
    assert f"`{draw}numero_ganador: {WINNING}`" in README.read_text(encoding="utf-8").replace("\n", " ")
    assert len(stored_rows(data, 1)) == AGENCIES * BETS

    # A restart on that data says the round there is drawn, and how to start over.
    with Server(data, workers=2, agencies=5, log_path=checkout.parent / "restart.log") as server:
        line = round_line(server)
    assert f"id: 1 | state: drawn | bets: {AGENCIES * BETS} | done: 5/5" in line, line
    assert "opens the next one with POST /rounds" in line

    # Start over: the README's command with the server stopped, then a new round.
    moved = shell(checkout, "http://127.0.0.1:1", blocks()["start-over"])
    assert moved.returncode == 0, moved.stderr
    [old] = [p for p in checkout.iterdir() if p.name.startswith("data.")]
    assert len(stored_rows(old, 1)) == AGENCIES * BETS and not data.exists()

    # The API walkthrough, on that new round; then pasted again, as a newcomer might; then
    # the operator opens the next round and reads the history.
    with Server(data, workers=3, agencies=5, log_path=checkout.parent / "api.log") as server:
        assert "state: open | bets: 0" in round_line(server)
        run_block(checkout, server, "api")
        status = httpx.get(f"{server.url}/status").json()
        again = shell(checkout, server.url, blocks()["api"])
        status_again = httpx.get(f"{server.url}/status").json()
        agency_1 = httpx.get(f"{server.url}/agencies/1/winners").json()["winners"]
        history = run_block(checkout, server, "next-round")
        rounds = rounds_of(server)
        # What the README says a wrong path gives: curl -s sends an empty body without a word.
        missing = shell(
            checkout,
            server.url,
            """curl -s "$LOTTERY_SERVER/agencies/1/bets" -H 'Content-Type: text/csv' --data-binary @gone.csv""",
        )
    expected_bets = 1 + BETS  # Ana's JSON bet and agency-1.csv; the invalid chunk stores nothing
    assert status == {"expected": 5, "done_count": 5, "drawn": True, "bets": expected_bets}
    assert again.returncode == 0, again.stderr
    assert status_again == status, again.stdout  # pasted twice, stored once
    assert sorted(agency_1) == sorted(winners_by_file[1])  # Ana's 1234 does not win
    rows = stored_rows(data, 1)
    assert len(rows) == expected_bets
    assert {row[0] for row in rows} == {"1"}
    assert ["1", "Ana", "Gómez", "01234567", "1990-01-01", "1234"] in rows
    assert set(rounds) == {1, 2}
    assert rounds[2] | {"opened_at": None, "seed_commitment": None} == {
        "round": 2, "state": "open", "agencies": 3, "winning_number": None, "random": True,
        "done_count": 0, "bets": 0, "winners": None, "opened_at": None, "drawn_at": None,
        "log": {"opened": rounds[1]["log"]["closed"] + 1, "closed": None}, "seed_commitment": None, "draw": None,
    }  # fmt: skip
    assert len(b64decode(rounds[2]["seed_commitment"])) == 32  # committed at the opening
    assert rounds[1]["state"] == "drawn" and rounds[1]["bets"] == expected_bets
    assert missing.returncode == 0 and missing.stderr == "", missing.stderr
    assert '"status":422' in missing.stdout and '"detail":"the chunk has no bets"' in missing.stdout
    assert '422 `"detail":"the chunk has no bets"`' in README.read_text(encoding="utf-8")
    assert set(agency_1) <= set(history.split()), history  # `winners --agency 1 --round 1` printed them


@pytest.mark.long  # the README's token commands: a round with every token, then the operator's
def test_the_readme_token_commands_run_as_written(checkout: Path):
    files = generated_files(checkout)
    made = shell(checkout, "http://127.0.0.1:1", blocks()["tokens"])
    assert made.returncode == 0, made.stderr
    secrets = checkout / "secrets"
    tokens = json.loads((secrets / "tokens.json").read_text())
    operator = (secrets / "operator.token").read_text().strip()
    assert tokens["operator"] == operator and set(tokens) == {"1", "2", "3", "4", "5", "operator"}

    env = {"LOTTERY_TOKENS_FILE": str(secrets / "tokens.json")}  # the README's LOTTERY_TOKENS_FILE=secrets/...
    with Server(checkout / "data", workers=3, agencies=5, env=env, log_path=checkout.parent / "tokens.log") as server:
        run_block(checkout, server, "with-tokens")
        rounds = rounds_of(server, Authorization=f"Bearer {operator}")
        anyone = httpx.post(f"{server.url}/rounds")
        agency = httpx.post(f"{server.url}/rounds", headers={"Authorization": f"Bearer {tokens['1']}"})
        operator_as_agency = httpx.get(
            f"{server.url}/agencies/1/winners", headers={"Authorization": f"Bearer {operator}"}
        )
    assert rounds[1]["state"] == "drawn" and rounds[1]["bets"] == AGENCIES * BETS
    assert rounds[1]["winners"] == sum(len(winners_in(path)) for path in files.values())
    assert rounds[2]["state"] == "open" and rounds[2]["agencies"] == 5 and rounds[2]["bets"] == 0
    assert (anyone.status_code, agency.status_code, operator_as_agency.status_code) == (401, 403, 403)
    assert "this is the operator's token" in operator_as_agency.json()["detail"]
