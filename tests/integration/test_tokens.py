"""Per-agency bearer tokens (LOTTERY_TOKENS_FILE) against real gunicorn, and the uploader with them.

401 without a valid token (with WWW-Authenticate), 403 with another agency's token, on every
agency route; the right token passes. Tokens never reach the server's log or the uploader's
output. Without a tokens file the master warns loudly; a malformed one stops it with one line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from app import tokens as tokens_module
from client.generate import generate
from devtools.server import Server
from tests.helpers import read_agency_file, without_log
from tests.support.server import refused_start
from tests.support.uploader import run_uploader, uploader

AGENCIES = 3
UPLOAD_ID = "sha256-feedbeef"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tokens")
    tokens = tokens_module.make(AGENCIES)
    tokens_module.write(root / "secrets", tokens)
    # DEBUG: the most verbose log the service writes (a line per stored bet) must not hold a token either.
    env = {"LOTTERY_TOKENS_FILE": str(root / "secrets" / "tokens.json"), "LOTTERY_LOG_LEVEL": "DEBUG"}
    server = Server(root / "data", workers=2, agencies=AGENCIES, env=env).start()
    try:
        yield server, tokens, root
    finally:
        server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")
    else:
        assert "www-authenticate" not in r.headers
    return body


def test_every_agency_route_needs_that_agencys_token(secured) -> None:
    server, tokens, _ = secured
    agency, other = 3, tokens["1"]
    routes = [
        (
            "POST",
            f"/agencies/{agency}/bets",
            {
                "content": b"Ana,G\xc3\xb3mez,30904465,1999-03-17,7574\n",
                "headers": {"Content-Type": "text/csv", "Idempotency-Key": "t-1"},
            },
        ),
        ("GET", f"/agencies/{agency}/uploads/{UPLOAD_ID}", {}),
        ("GET", f"/agencies/{agency}/uploads", {}),
        ("GET", f"/agencies/{agency}/winners", {}),
        ("POST", f"/agencies/{agency}/done", {}),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path, kwargs in routes:
            extra = kwargs.get("headers", {})
            cases = {
                "no token": ({}, 401),
                "a wrong token": (bearer("not-a-token-of-anyone-0123456789"), 401),
                "the right token as Basic": ({"Authorization": f"Basic {tokens[str(agency)]}"}, 401),
                "a bearer without token": ({"Authorization": "Bearer"}, 401),
                "another agency's token": (bearer(other), 403),
            }
            for name, (auth, status) in cases.items():
                r = client.request(method, path, **{**kwargs, "headers": {**extra, **auth}})
                assert r.status_code == status, f"{method} {path} with {name}: {r.status_code} {r.text}"
                assert_problem(r, status)
        # Nothing of the refused requests happened.
        status = client.get("/status", headers=bearer(tokens["1"])).json()
        assert status == {"expected": AGENCIES, "done_count": 0, "drawn": False, "bets": 0}

        right = bearer(tokens[str(agency)])
        method, path, kwargs = routes[0]
        r = client.request(method, path, **{**kwargs, "headers": {**kwargs["headers"], **right}})
        assert (r.status_code, without_log(r.json())) == (201, {"agency": agency, "stored": 1})
        r = client.get(f"/agencies/{agency}/uploads/{UPLOAD_ID}", headers=right)
        assert (r.status_code, r.json()) == (200, {"upload_id": UPLOAD_ID, "committed": [], "bets": 0, "spans": []})
        assert_problem(client.get(f"/agencies/{agency}/winners", headers=right), 425)  # authorized, too early
        r = client.post(f"/agencies/{agency}/done", headers=right)
        assert (r.status_code, r.json()["done"]) == (200, 1)
        # The round's progress needs a token, any agency's; liveness (load balancers) needs none.
        assert_problem(client.get("/status"), 401)
        assert client.get("/status", headers=bearer(other)).status_code == 200
        assert client.get("/status", headers=bearer(tokens["operator"])).status_code == 200  # the operator too
        assert client.get("/health").status_code == 200
        # An unknown agency is 404 with a valid token, and 401 without: no token, no list of agencies.
        assert_problem(client.get("/agencies/99/winners", headers=right), 404)
        assert_problem(client.get("/agencies/99/winners"), 401)


def test_uploader_with_token_file_runs_the_round_and_without_token_exits_1(secured, tmp_path: Path) -> None:
    server, tokens, root = secured
    files = dict(enumerate(generate(tmp_path / "in", agencies=2, bets=3_000, seed=9), 1))

    code, _, err = run_uploader(
        "run", "--agency", "1", "--file", str(files[1]), "--server", server.url, "--retries", "1", timeout=60
    )
    assert code == 1
    errors = [line for line in err.splitlines() if "401" in line]
    assert len(errors) == 1 and "a valid token is required" in errors[0], err
    assert "Traceback" not in err

    procs = [
        uploader(
            *("run", "--agency", str(a), "--file", str(p), "--server", server.url, "--json"),
            *("--token-file", str(root / "secrets" / f"agency-{a}.token")),
        )
        for a, p in files.items()
    ]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # The round needs all three: agency 3 says done (again, if the test above ran: idempotent).
        assert client.post("/agencies/3/done", headers=bearer(tokens["3"])).status_code == 200
        outputs = [proc.communicate(timeout=60) + (proc.returncode,) for proc in procs]
        for agency, (out, err, code) in zip(files, outputs, strict=False):
            assert code == 0, err
            expected = [bet[2] for bet in read_agency_file(files[agency]) if bet[4] == 7574]
            assert json.loads(out)["winners"] == expected
            for token in tokens.values():
                assert token not in out and token not in err
        r = client.get("/agencies/1/winners", headers=bearer(tokens["1"]))
        assert r.status_code == 200
        assert_problem(client.get("/agencies/1/winners", headers=bearer(tokens["2"])), 403)
        assert_problem(client.get("/agencies/1/winners"), 401)


def test_tokens_never_reach_the_log(secured) -> None:
    server, tokens, _ = secured
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for agency in tokens:  # every token, presented to its agency and to the others
            for token in tokens.values():
                client.get(f"/agencies/{agency}/uploads/{UPLOAD_ID}", headers=bearer(token))
                client.post(
                    f"/agencies/{agency}/bets",
                    content=b"x,y,1,1990-01-01,1\n",
                    headers={**bearer(token), "Content-Type": "text/csv"},
                )
    deadline = time.monotonic() + 10  # chunk lines are written in batches, within 50 ms (app/logs.py)
    while "action: apuesta_recibida" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "action: apuesta_recibida" in log  # the log is there and has seen the requests
    for agency, token in tokens.items():
        assert token not in log, f"the token of agency {agency} is in the server log"
    assert "agency routes are OPEN" not in log


def test_open_server_warns_loudly(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=1, agencies=1) as server:
        log = server.log()
    warnings = [line for line in log.splitlines() if "agency routes are OPEN" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "LOTTERY_TOKENS_FILE" in warnings[0]


@pytest.mark.parametrize("content", ['{"1": "short"}', "not json", '{"100001": "0123456789abcdef0123"}', '["a"]'])
def test_malformed_tokens_file_stops_the_server_with_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    lines, log = refused_start(tmp_path / "data", {"LOTTERY_TOKENS_FILE": str(path)}, agencies=2)
    assert len(lines) == 1 and lines[0].startswith("lottery: invalid setting: LOTTERY_TOKENS_FILE: "), log
    assert "Traceback" not in log
    assert "short" not in lines[0]  # the message names the problem, never the token itself
