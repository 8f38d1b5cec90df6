"""Issue 23 end to end: real gunicorn (3 workers) on loopback, on each backend, real uploader
processes keeping receipts, then ``python -m client verify`` trusting only the log's key.

A fixed-number round and a random one verify for every agency; the same verify fails when one
bet of the agency's file differs from what was uploaded, naming the chunk's lines, and when it
is given another key. (A chunk removed or altered in the server's storage depends on the server's
files and tables: the server branch's tests; verify's side of it is tests/unit/test_verify.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app import tokens as tokens_module
from client.generate import generate
from devtools.server import Server
from tests.postgres_db import fresh_database
from tests.support.uploader import run_uploader, uploader
from tlog import keyfile

ORIGIN = "lottery.test/log"
AGENCIES = 2


@pytest.fixture(params=["files", "postgres"])
def backend_env(request) -> dict[str, str]:
    if request.param == "files":
        yield {}
    else:
        with fresh_database("lottery_verify") as url:
            yield {"LOTTERY_DATABASE_URL": url}


def _run_round(server: Server, secrets: Path, files: dict[int, Path]) -> None:
    procs = {
        agency: uploader(
            "run",
            *("--agency", str(agency), "--file", str(path), "--server", server.url),
            *("--token-file", str(secrets / f"agency-{agency}.token"), "--batch-size", "300", "--json"),
        )
        for agency, path in files.items()
    }
    for agency, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)["agency"] == agency


def _verify(server: Server, secrets: Path, agency: int, path: Path, round_id: int, vkey: str, *extra: str):
    return run_uploader(
        "verify",
        *("--agency", str(agency), "--file", str(path), "--round", str(round_id), "--log-key", vkey),
        *("--server", server.url, "--token-file", str(secrets / f"agency-{agency}.token"), *extra),
        timeout=120,
    )


def test_rounds_through_the_real_uploaders_verify_and_a_changed_bet_fails(tmp_path: Path, backend_env) -> None:
    secrets = tmp_path / "secrets"
    tokens = tokens_module.make(AGENCIES)
    tokens_module.write(secrets, tokens)
    signer = keyfile.write_new_key(tmp_path / "log.key", ORIGIN)
    vkey = signer.verifier().vkey()
    env = {
        **backend_env,
        "LOTTERY_TOKENS_FILE": str(secrets / "tokens.json"),
        "LOTTERY_LOG_KEY_FILE": str(tmp_path / "log.key"),
        "LOTTERY_LOG_ORIGIN": ORIGIN,
    }
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    round_1 = dict(enumerate(generate(tmp_path / "r1", agencies=AGENCIES, bets=2000, seed=31), 1))
    round_2 = dict(enumerate(generate(tmp_path / "r2", agencies=AGENCIES, bets=1500, seed=32), 1))

    with Server(tmp_path / "data", workers=3, agencies=AGENCIES, env=env) as server:
        agency_1 = {"Authorization": f"Bearer {tokens['1']}"}
        served = httpx.get(server.url + "/log/vkey", headers=agency_1)
        assert served.status_code == 200 and served.text == vkey + "\n"

        # -- round 1: the course's fixed number -------------------------------------------------
        _run_round(server, secrets, round_1)
        for agency, path in round_1.items():
            receipts = [json.loads(line) for line in Path(f"{path}.receipts.jsonl").read_text().splitlines()]
            chunks = [r for r in receipts if r["kind"] == "chunk"]
            assert sum(r["end"] - r["start"] for r in chunks) == 2000 and len({r["salt"] for r in chunks}) == 1
            done = _verify(server, secrets, agency, path, 1, vkey)
            assert done.code == 0, done.out + done.err
            assert done.out.endswith("verified: every check holds\n")
            assert "only its bets are provable, not its number" in done.out

        # -- round 2: a random number, committed at the opening ---------------------------------
        opened = httpx.post(server.url + "/rounds", json={"winning_number": "random"}, headers=operator)
        assert opened.status_code == 201, opened.text
        commitment = httpx.get(server.url + "/rounds/2", headers=agency_1).json()["seed_commitment"]
        _run_round(server, secrets, round_2)
        info = httpx.get(server.url + "/rounds/2", headers=agency_1).json()
        assert info["seed_commitment"] == commitment and info["draw"]["seed"] is not None
        for agency, path in round_2.items():
            done = _verify(server, secrets, agency, path, 2, vkey, "--json")
            report = json.loads(done.out)
            assert done.code == report["status"] == 0, done.out
            assert any("derived from the committed seed" in c["detail"] for c in report["checks"])

        # -- one bet of agency 1's file differs from what it uploaded -----------------------------
        path = round_1[1]
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        first, last, document, birthdate, number = lines[1001].rstrip("\r\n").split(",")
        lines[1001] = ",".join((first, last, document, birthdate, str((int(number) + 1) % 10000))) + "\n"
        path.write_text("".join(lines), encoding="utf-8")
        done = _verify(server, secrets, 1, path, 1, vkey)
        assert done.code == 1
        failed = [line for line in done.out.splitlines() if line.startswith("FAIL  chunk")]
        assert len(failed) == 1 and f"{path}:" in failed[0]
        low, high = (int(n) for n in failed[0].split(f"{path}:")[1].split(" ")[0].split("-"))
        assert low <= 1002 <= high  # the changed line, 1-based, is inside the named chunk

        # -- the checkpoints are all one history: a wrong key is refused ---------------------------
        other = keyfile.write_new_key(tmp_path / "other.key", ORIGIN).verifier().vkey()
        done = _verify(server, secrets, 2, round_1[2], 1, other)
        assert done.code == 1 and "no verifiable signatures" in done.out
