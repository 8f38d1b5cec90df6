"""``python -m client run`` as a program against real gunicorn: the requests it makes, the modules it
loads, and its output and exit code when it ends without interpreter teardown (issue 15)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from client.generate import generate
from devtools.server import ROOT, Server
from tests.support.uploader import uploader, uploader_env

# Runs client/__main__.py as ``python -m client`` does (run_name "__main__"), recording each
# Api.request call (a refused one too), and which optional modules were loaded by then, one JSON line each.
RECORDING = """
import json, runpy, sys
record = open(sys.argv[1], "a", buffering=1)
import client.http

def modules():
    return {name: "absent" if name not in sys.modules else "blocked" if sys.modules[name] is None else "loaded"
            for name in ("httpx", "httpx._main", "click", "rich", "pygments", "anyio", "trio")}

original = client.http.Api.request

def request(self, method, path, **kwargs):
    query = "&".join(f"{k}={v}" for k, v in (kwargs.get("params") or {}).items())
    def write(status):
        record.write(json.dumps([method, path + ("?" + query if query else ""), status, modules()]) + "\\n")
    try:
        response = original(self, method, path, **kwargs)
    except client.http.Rejected as error:  # refused requests are recorded too
        write(error.status)
        raise
    write(response.status_code)
    return response

client.http.Api.request = request
sys.argv = ["client", *sys.argv[2:]]
runpy.run_module("client", run_name="__main__", alter_sys=True)
raise AssertionError("the program returned instead of exiting")
"""


def run_recorded(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list]:
    record = tmp_path / "requests.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", RECORDING, str(record), *args],
        cwd=ROOT,
        env=uploader_env(),  # the test's own LOTTERY_* settings are not the uploader's
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = record.read_text().splitlines() if record.exists() else []
    return done, [json.loads(line) for line in lines]


def test_a_fresh_upload_makes_only_the_requests_it_needs_and_loads_no_optional_module(tmp_path: Path) -> None:
    (path,) = generate(tmp_path / "in", agencies=1, bets=12, seed=3)
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        done, requests = run_recorded(
            tmp_path, "run", "--agency", "1", "--file", str(path), "--server", server.url, "--batch-size", "5", "--json"
        )
    assert done.returncode == 0, done.stderr
    assert [r[:3] for r in requests] == [
        ["GET", "/rounds?limit=1", 200],
        ["GET", "/rounds/1/agencies/1/uploads", 200],
        ["POST", "/rounds/1/agencies/1/bets", 201],
        ["POST", "/rounds/1/agencies/1/bets", 201],
        ["POST", "/rounds/1/agencies/1/bets", 201],
        ["POST", "/rounds/1/agencies/1/done", 200],
        ["GET", "/rounds/1/agencies/1/winners?wait=0", 200],
    ]
    # httpx is loaded; its command-line tool and the async backends never are, at any request.
    for *_, modules in requests:
        assert modules == {
            "httpx": "loaded",
            "httpx._main": "blocked",
            "click": "absent",
            "rich": "absent",
            "pygments": "absent",
            "anyio": "blocked",
            "trio": "blocked",
        }
    # Ended by os._exit: stdout still holds the whole answer, stderr the course's last line.
    assert json.loads(done.stdout)["agency"] == 1
    assert "action: consulta_ganadores | result: success" in done.stderr.splitlines()[-1]


def test_a_failing_run_exits_with_its_code_and_its_message(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    # Port 9 (discard) is never asked: both fail before any request.
    done, requests = run_recorded(tmp_path, "run", "--agency", "1", "--file", str(missing), "--server", "127.0.0.1:9")
    bad_option, _ = run_recorded(tmp_path, "run", "--agency", "0", "--server", "127.0.0.1:9")
    assert done.returncode == 1 and requests == []
    assert done.stderr.rstrip().endswith(f"error: bets file not found: {missing}")
    assert bad_option.returncode == 2
    assert bad_option.stderr == "error: invalid value for agency: 0\n"


def test_a_run_against_a_drawn_round_stops_before_sending_and_says_why(tmp_path: Path) -> None:
    # Issue 25: the uploader logged `estado: drawn`, sent its chunks anyway and failed on a 409 each.
    first, other = generate(tmp_path / "in", agencies=2, bets=12, seed=3)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with Server(tmp_path / "data", workers=2, agencies=2) as server:
        # Agency 2 says done with nothing, agency 1 uploads: round 1 is drawn.
        nothing = uploader("run", "--agency", "2", "--file", str(empty), "--server", server.url)
        drawn, _ = run_recorded(tmp_path, "run", "--agency", "1", "--file", str(first), "--server", server.url)
        assert (drawn.returncode, nothing.wait(timeout=60)) == (0, 0), drawn.stderr
        (tmp_path / "requests.jsonl").unlink()
        done, requests = run_recorded(
            tmp_path, "run", "--agency", "2", "--file", str(other), "--server", server.url, "--batch-size", "5"
        )
        rerun, _ = run_recorded(tmp_path, "run", "--agency", "1", "--file", str(first), "--server", server.url)
    assert done.returncode == 1
    assert [r[:3] for r in requests] == [
        ["GET", "/rounds?limit=1", 200],
        ["GET", "/rounds/1/agencies/2/uploads", 200],
    ]
    lines = done.stderr.splitlines()
    assert [line for line in lines if "result: fail" in line] == [lines[-1]]
    assert lines[-1].endswith(
        "action: run | result: fail | error: round 1 is drawn: ask the operator to open the next one"
    )
    # The file the round already holds whole is still answered: done again, then its winners.
    assert rerun.returncode == 0, rerun.stderr
