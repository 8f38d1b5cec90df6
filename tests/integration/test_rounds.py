"""Draw after draw (issue 11): three rounds back to back on real gunicorn with real uploader
processes, on both backends, with a restart under other settings in between.

Round 1 is the course's dataset (winners 2, 3, 3, 2, 0); rounds 2 and 3 are generated files
with other agencies and winning numbers. After round 3, round 1's winners still read the same.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import tokens as tokens_module
from client.generate import generate
from devtools.server import ROOT, Server
from tests.helpers import expected_rows, read_agency_file, stored_rows
from tests.postgres_db import fresh_database, require_postgres
from tests.support.proxy import HoldingProxy, hold_after
from tests.support.uploader import run_uploader, uploader

# Per generated file: enough that a signal once 10 thousand are stored lands mid-upload.
BETS = 60_000


def run_round(server: Server, secrets: Path, files: dict[int, Path]) -> dict[int, tuple[list[str], str]]:
    """Every agency's uploader at once: each one's winners (from its --json output) and its stderr."""
    procs = {
        a: uploader(
            "run",
            *("--agency", str(a), "--file", str(path), "--server", server.url, "--json"),
            *("--token-file", str(secrets / f"agency-{a}.token"), "--batch-size", "2000"),
        )
        for a, path in files.items()
    }
    results = {}
    for agency, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        results[agency] = (json.loads(out)["winners"], err)
    return results


def winners_in(files: dict[int, Path], number: int) -> dict[int, list[str]]:
    """The documents of the bets on ``number``, per agency, sorted (stored order follows the chunks' arrival)."""
    return {a: sorted(bet[2] for bet in read_agency_file(path) if bet[4] == number) for a, path in files.items()}


def got(results: dict[int, tuple[list[str], str]]) -> dict[int, list[str]]:
    return {a: sorted(winners) for a, (winners, _) in results.items()}


def exported(server: Server, round_id: int, database_url: str | None) -> Counter:
    """``python -m app.export --round N``: that round's bets as the course's bets.csv."""
    env = {"PATH": os.environ["PATH"]}
    env.update({"LOTTERY_DATABASE_URL": database_url} if database_url else {"LOTTERY_DATA_DIR": str(server.data_dir)})
    proc = subprocess.run(
        [sys.executable, "-m", "app.export", "--round", str(round_id), "--out", "-"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = csv.reader(io.StringIO(proc.stdout.decode()))
    return Counter((int(a), f, last, d, b, int(n)) for a, f, last, d, b, n in rows)


@pytest.fixture(params=["files", "postgres"])
def database_url(request) -> Iterator[str | None]:
    if request.param == "files":
        yield None
        return
    require_postgres()
    with fresh_database("lottery_rounds") as url:
        yield url


@pytest.mark.long  # three whole rounds and a restart, on each backend: `make test-long`
def test_three_rounds_back_to_back(tmp_path: Path, dataset: Path, database_url: str | None) -> None:
    secrets = tmp_path / "secrets"
    tokens = tokens_module.make(5)
    tokens_module.write(secrets, tokens)
    assert (secrets / "operator.token").read_text().strip() == tokens["operator"]
    env = {"LOTTERY_TOKENS_FILE": str(secrets / "tokens.json")}
    if database_url:
        env["LOTTERY_DATABASE_URL"] = database_url
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    data = tmp_path / "data"

    round_1 = {a: dataset / f"agency-{a}.csv" for a in range(1, 6)}
    round_2 = dict(enumerate(generate(tmp_path / "r2", agencies=3, bets=3000, seed=2, winning_number=42), 1))
    round_3 = dict(enumerate(generate(tmp_path / "r3", agencies=2, bets=2500, seed=3, winning_number=9), 1))

    with Server(data, workers=3, agencies=5, env=env) as server:
        # -- round 1: the course's dataset, the server's settings (5 agencies, 7574) -------------------
        results = run_round(server, secrets, round_1)
        assert [len(results[a][0]) for a in round_1] == [2, 3, 3, 2, 0]
        assert got(results) == winners_in(round_1, 7574)
        assert all("action: ronda | result: success | ronda: 1 | estado: open" in err for _, err in results.values())

        # -- round 2 is opened by the operator alone, with other parameters ----------------------------
        with httpx.Client(base_url=server.url) as client:
            assert client.post("/rounds").status_code == 401
            agency = {"Authorization": f"Bearer {tokens['1']}"}
            assert client.post("/rounds", headers=agency).status_code == 403
            body = {"agencies": 3, "winning_number": 42}
            r = client.post("/rounds", json=body, headers=operator)
            assert r.status_code == 201, r.text
            opened = r.json()
            assert {k: opened[k] for k in ("round", "state", "agencies", "winning_number", "done_count", "bets")} == {
                "round": 2,
                "state": "open",
                "agencies": 3,
                "winning_number": 42,
                "done_count": 0,
                "bets": 0,
            }
            again = client.post("/rounds", json=body, headers=operator)
            assert again.status_code == 409 and again.json()["current_round"] == 2
            # the operator's token uploads nothing for an agency: 403, saying whose token it is
            bet = b"Ana,Lopez,30000001,1999-03-17,42\n"
            csv_body = {"content": bet, "headers": {**operator, "Content-Type": "text/csv"}}
            refused = client.post("/rounds/2/agencies/1/bets", **csv_body)
            assert refused.status_code == 403 and "operator's token" in refused.json()["detail"]
            late = client.post("/rounds/1/agencies/1/bets", content=bet, headers={**agency, "Content-Type": "text/csv"})
            assert late.status_code == 409 and "the current round is 2" in late.json()["detail"]
        draws = server.log().count("action: sorteo | result: success")

    # -- restart with other settings: round 2 keeps its own; they are the defaults of round 3 ------------
    restarted_env = {**env, "LOTTERY_AGENCIES": "2", "LOTTERY_WINNING_NUMBER": "9"}
    with Server(data, workers=3, agencies=2, env=restarted_env) as server:
        assert "the round in progress was started with LOTTERY_AGENCIES=3 LOTTERY_WINNING_NUMBER=42" in server.log()
        results = run_round(server, secrets, round_2)
        assert got(results) == winners_in(round_2, 42)
        assert sum(len(w) for w, _ in results.values()) > 0
        assert all("ronda: 2 | estado: open | agencias: 3" in err for _, err in results.values())

        r = httpx.post(server.url + "/rounds", headers=operator)  # no body: the settings of now
        assert r.status_code == 201 and (r.json()["agencies"], r.json()["winning_number"]) == (2, 9)

        # the same file stored whole in an earlier round is not sent again silently
        code, _, err = run_uploader(
            "run",
            *("--agency", "1", "--file", str(round_1[1]), "--server", server.url),
            *("--token-file", str(secrets / "agency-1.token")),
            timeout=60,
        )
        assert code == 1 and "already uploaded whole in round 1" in err and "--again" in err
        assert httpx.get(server.url + "/rounds/3", headers=operator).json()["bets"] == 0

        results = run_round(server, secrets, round_3)
        assert got(results) == winners_in(round_3, 9)

        # -- history: every round kept, round 1's winners read after round 3 ------------------------------
        for a in round_1:
            code, out, err = run_uploader(
                "winners",
                *("--agency", str(a), "--round", "1", "--server", server.url, "--json"),
                *("--token-file", str(secrets / f"agency-{a}.token")),
                timeout=60,
            )
            assert code == 0, err
            assert sorted(json.loads(out)["winners"]) == winners_in(round_1, 7574)[a]
        code, out, err = run_uploader(
            "rounds", "--server", server.url, "--json", "--token-file", str(secrets / "operator.token"), timeout=60
        )
        assert code == 0, err
        rounds = json.loads(out)
        assert [(r["round"], r["state"], r["agencies"], r["winning_number"]) for r in rounds] == [
            (3, "drawn", 2, 9),
            (2, "drawn", 3, 42),
            (1, "drawn", 5, 7574),
        ]
        assert [r["bets"] for r in rounds] == [5000, 9000, 78_697]
        assert rounds[2]["winners"] == 10 and all(r["drawn_at"] for r in rounds)
        page = httpx.get(server.url + "/rounds", params={"limit": 2}, headers=operator).json()
        assert [r["round"] for r in page["rounds"]] == [3, 2] and page["next"] == "/rounds?before=2&limit=2"
        state = httpx.get(server.url + "/operator/state", headers=operator).json()
        assert state["round"] == 3 and [(p["round"], p["bets"]) for p in state["past_rounds"]] == [
            (2, 9000),
            (1, 78_697),
        ]
        draws += server.log().count("action: sorteo | result: success")
    assert draws == 3

    for round_id, files in ((1, round_1), (2, round_2), (3, round_3)):
        assert exported(server, round_id, database_url) == expected_rows(files)


def test_an_uploader_never_puts_bets_into_a_later_round(tmp_path: Path) -> None:
    """Paused mid-upload (SIGSTOP) while its round is drawn and the next one opens: on waking up it
    stops with a clear message, and the new round holds none of its bets."""
    files = dict(enumerate(generate(tmp_path / "in", agencies=1, bets=BETS, seed=5), 1))
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        proc = uploader("run", "--agency", "1", "--file", str(files[1]), "--server", server.url, "--batch-size", "1000")
        deadline = time.monotonic() + 60
        while httpx.get(server.url + "/status").json()["bets"] < 10_000:  # an observed event, polled
            assert time.monotonic() < deadline and proc.poll() is None
        proc.send_signal(signal.SIGSTOP)
        try:
            assert httpx.post(server.url + "/agencies/1/done").json()["drawn"] is True
            assert httpx.post(server.url + "/rounds").status_code == 201
        finally:
            proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert "round 1 is over and the server's current round is now 2: this uploader stops" in err
        status = httpx.get(server.url + "/rounds/2").json()
        assert (status["round"], status["bets"], status["done_count"]) == (2, 0, 0)


def test_a_file_of_an_earlier_round_goes_again_only_with_again_and_then_resumes(tmp_path: Path) -> None:
    files = dict(enumerate(generate(tmp_path / "in", agencies=1, bets=BETS, seed=6), 1))
    run = ("run", "--agency", "1", "--file", str(files[1]), "--batch-size", "1000")
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        code, out, err = run_uploader(*run, "--server", server.url, "--json")
        assert code == 0, err
        assert httpx.post(server.url + "/rounds").status_code == 201

        code, _, err = run_uploader(*run, "--server", server.url, timeout=60)
        assert code == 1 and "already uploaded whole in round 1" in err

        # Killed once 10 chunks are stored in round 2 and the next is held: nothing else in flight.
        with HoldingProxy(server.port, allow=10) as proxy:
            again = uploader(*run, "--server", proxy.url, "--again")
            hold_after(proxy, again, lambda: httpx.get(server.url + "/rounds/2").json()["bets"], 10_000)
        partial = httpx.get(server.url + "/rounds/2").json()["bets"]
        assert partial == 10_000

        # begun in this round: a rerun resumes it, no --again needed
        code, out_2, err = run_uploader(*run, "--server", server.url, "--json")
        assert code == 0, err
        assert f"ya_almacenadas: {partial}" in err
        # the same bets, the same winning number: the same winners (in the order the chunks arrived)
        assert sorted(json.loads(out_2)["winners"]) == sorted(json.loads(out)["winners"])
        assert httpx.get(server.url + "/rounds/2").json()["bets"] == BETS
        assert stored_rows(server.data_dir, 2) == stored_rows(server.data_dir, 1) == expected_rows(files)
