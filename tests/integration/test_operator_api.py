"""The operator page's data routes against real gunicorn: who may read them, and what they hold.

With tokens configured, ``/operator/state`` and ``/operator/events`` need a bearer token, the
operator's (the optional ``"operator"`` key of the tokens file) or any agency's, and ``GET /``
carries no data at all. The operator's token opens nothing else. The data is counts only:
no winner's document and no token, ever. ``/metrics`` stays open, like ``/health``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from app import tokens as tokens_module
from devtools.server import Server
from tests.postgres_db import fresh_database
from tlog import b64, checkpoint, draw, note

AGENCIES = 2
OPERATOR = "operator-token-" + "o" * 20
WINNER = "30904465"
BET = f"Ana,Gómez,{WINNER},1999-03-17,7574\nLuis,Paz,20111222,1980-01-02,12\n".encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def initial_snapshot(html: str) -> object:
    return json.loads(re.search(r'<script type="application/json" id="initial">(.*?)</script>', html, re.S).group(1))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("operator")
    tokens = {**tokens_module.make(AGENCIES), "operator": OPERATOR}
    (root / "tokens.json").write_text(json.dumps(tokens), encoding="utf-8")
    with Server(
        root / "data", workers=2, agencies=AGENCIES, env={"LOTTERY_TOKENS_FILE": str(root / "tokens.json")}
    ) as s:
        yield s, tokens


def test_the_page_holds_nothing_before_a_token(secured) -> None:
    server, tokens = secured
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-auth="required"' in page.text
    assert initial_snapshot(page.text) is None
    assert "Agency 1" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    for token in tokens.values():
        assert token not in page.text


@pytest.mark.parametrize("path", ["/operator/state", "/operator/events", "/operator/agencies"])
def test_the_data_needs_a_valid_token(secured, path: str) -> None:
    server, _ = secured
    for headers in ({}, bearer("not-a-token-of-this-server"), {"Authorization": "Basic b3A6b3A="}):
        r = httpx.get(server.url + path, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_the_operators_token_and_an_agencys_may_read(secured) -> None:
    server, tokens = secured
    for token in (OPERATOR, tokens["1"], tokens["2"]):
        r = httpx.get(server.url + "/operator/state", headers=bearer(token))
        assert r.status_code == 200, r.text
        assert r.json()["expected"] == AGENCIES
    with httpx.stream("GET", server.url + "/operator/events", headers=bearer(OPERATOR), timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        first = next(line for line in stream.iter_lines() if line.startswith("data:"))
    assert json.loads(first[5:])["expected"] == AGENCIES
    page = httpx.get(server.url + "/operator/agencies?after=1&limit=5", headers=bearer(tokens["2"]))
    assert page.status_code == 200 and page.json()["expected"] == AGENCIES
    assert [a["agency"] for a in page.json()["agencies"]] == list(range(2, AGENCIES + 1))  # after 1, to the last


def test_the_operators_token_opens_nothing_else(secured) -> None:
    server, _ = secured
    headers = {**bearer(OPERATOR), "Content-Type": "text/csv"}
    # A valid token, for other acts: 403 saying whose it is (issue 25: it read "not valid", 401).
    answers = [
        httpx.post(server.url + "/agencies/1/bets", content=BET, headers=headers),
        httpx.post(server.url + "/agencies/1/done", headers=bearer(OPERATOR)),
        httpx.get(server.url + "/agencies/1/winners", headers=bearer(OPERATOR)),
    ]
    assert [(r.status_code, "operator's token" in r.json()["detail"]) for r in answers] == [(403, True)] * 3


def test_counts_only_never_a_document_or_a_token(secured) -> None:
    server, tokens = secured
    with httpx.Client(base_url=server.url) as client:
        r = client.post("/agencies/1/bets", content=BET, headers={**bearer(tokens["1"]), "Content-Type": "text/csv"})
        assert r.status_code == 201
        for agency in (1, 2):
            assert client.post(f"/agencies/{agency}/done", headers=bearer(tokens[str(agency)])).status_code == 200
        assert client.get("/agencies/1/winners", headers=bearer(tokens["1"])).json()["winners"] == [WINNER]
        with client.stream("GET", "/operator/events", headers=bearer(OPERATOR), timeout=30) as stream:
            # The stream's worker may have its snapshot from before the draw: read until it shows the draw.
            for line in stream.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["state"] == "drawn":
                    event = line
                    break
        state = client.get("/operator/state", headers=bearer(OPERATOR))
        metrics = client.get("/metrics")  # open, like /health
    drawn = json.loads(event[5:])
    assert drawn["winners"] == 1 and drawn["bets"] == 2 and drawn["done"] == AGENCIES
    assert [(a["agency"], a["bets"], a["chunks"], a["done"], a["winners"]) for a in drawn["agencies"]] == [
        (1, 2, 1, True, 1),
        (2, 0, 0, True, 0),
    ]
    assert drawn["drawn_at"] is not None and drawn["past_rounds"] == []
    assert metrics.status_code == 200
    for text in (event, state.text, metrics.text):
        assert WINNER not in text
        assert "Gómez" not in text and "20111222" not in text
        for token in tokens.values():
            assert token not in text


def test_without_tokens_the_page_carries_its_first_snapshot(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=3) as server:
        page = httpx.get(server.url + "/").text
        state = httpx.get(server.url + "/operator/state").json()
    assert 'data-auth="open"' in page
    initial = initial_snapshot(page)
    # The ingest history is each worker's own sampling of the same totals: the times may differ.
    assert [bets for _, bets in initial.pop("ingest")] == [bets for _, bets in state.pop("ingest")] == [0]
    assert initial == state
    assert [a["agency"] for a in state["agencies"]] == [1, 2, 3]


def test_the_tokens_file_may_name_the_operator(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    agencies = tokens_module.make(2)
    path.write_text(json.dumps({**agencies, "operator": OPERATOR}))
    loaded = tokens_module.Tokens.load(path, 2)
    assert loaded.may_view(OPERATOR) and loaded.may_view(agencies["2"]) and not loaded.may_view("x" * 30)
    assert loaded.owner(OPERATOR) is None  # no agency's rights
    path.write_text(json.dumps(agencies))  # today's shape, agencies only: still loads, no operator
    assert tokens_module.Tokens.load(path, 2).may_view(agencies["1"])
    assert not tokens_module.Tokens.load(path, 2).may_view(OPERATOR)
    for bad, message in (
        ({**agencies, "operator": "short"}, "the operator"),
        ({**agencies, "operator": agencies["1"]}, "shares"),
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(tokens_module.TokensError, match=message):
            tokens_module.Tokens.load(path, 2)


def state_when(client: httpx.Client, shows) -> dict:
    """The page's data once every worker's snapshot caught up with what the test did (a snapshot
    is refreshed at most twice a second): polled until ``shows`` holds."""
    deadline = time.monotonic() + 30
    while True:
        state = client.get("/operator/state").json()
        if shows(state):
            return state
        assert time.monotonic() < deadline, f"the page's data never caught up: {state}"
        time.sleep(0.1)


@pytest.mark.parametrize("backend", ["files", "postgres"])
def test_the_pages_data_carries_the_rounds_log_fields_as_get_rounds_has_them(tmp_path: Path, backend: str) -> None:
    """Issue 23: the transparency panel's data, in the page's one data endpoint: the round's
    ``log``, ``seed_commitment`` and ``draw`` exactly as ``GET /rounds/{n}``; ``transparency``:
    the log's origin, its verifier key as ``GET /log/vkey`` and its latest checkpoint. A random
    round's seed appears only with its draw."""
    env = {"LOTTERY_LOG_ORIGIN": "lottery.test/operator-log"}
    with (
        fresh_database() if backend == "postgres" else contextlib.nullcontext() as url,
        Server(
            tmp_path / "data", workers=2, agencies=AGENCIES, env=env | ({"LOTTERY_DATABASE_URL": url} if url else {})
        ) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        vkey = client.get("/log/vkey").text.strip()
        fields = ("log", "seed_commitment", "draw")

        def head() -> dict:
            signed = checkpoint.Checkpoint.parse(note.parse_note(client.get("/log/checkpoint").content).text)
            return {"size": signed.size, "root": b64.encode(signed.root)}

        first = state_when(client, lambda s: s["round"] == 1)
        assert {k: first[k] for k in fields} == {k: client.get("/rounds/1").json()[k] for k in fields}
        assert first["log"] == {"opened": 0, "closed": None} and first["seed_commitment"] is None
        assert first["transparency"] == {"origin": "lottery.test/operator-log", "vkey": vkey, "checkpoint": head()}

        assert client.post("/agencies/1/bets", content=BET, headers={"Content-Type": "text/csv"}).status_code == 201
        for agency in range(1, AGENCIES + 1):
            assert client.post(f"/agencies/{agency}/done").status_code == 200
        drawn = state_when(client, lambda s: s["state"] == "drawn" and s["draw"] is not None)
        assert {k: drawn[k] for k in fields} == {k: client.get("/rounds/1").json()[k] for k in fields}
        assert drawn["draw"]["seed"] is None and drawn["draw"]["winning_number"] == 7574  # a fixed number
        assert drawn["transparency"]["checkpoint"] == head() == {"size": 3, "root": drawn["draw"]["root"]}

        assert client.post("/rounds", json={"winning_number": "random"}).status_code == 201
        opened = state_when(client, lambda s: s["round"] == 2)
        assert {k: opened[k] for k in fields} == {k: client.get("/rounds/2").json()[k] for k in fields}
        assert opened["log"] == {"opened": 3, "closed": None} and opened["draw"] is None
        assert b64.decode(opened["seed_commitment"]) and "seed" not in json.dumps(opened).replace("seed_commitment", "")
        for agency in range(1, AGENCIES + 1):
            assert client.post(f"/agencies/{agency}/done").status_code == 200
        drawn = state_when(client, lambda s: s["round"] == 2 and s["draw"] is not None)
        published = client.get("/rounds/2").json()
        assert {k: drawn[k] for k in fields} == {k: published[k] for k in fields}
        seed = b64.decode(drawn["draw"]["seed"])
        assert draw.seed_commitment(seed) == b64.decode(drawn["seed_commitment"])
        assert (
            drawn["draw"]["winning_number"]
            == drawn["winning_number"]
            == draw.winning_number(
                "lottery.test/operator-log", 2, drawn["draw"]["size"], b64.decode(drawn["draw"]["root"]), seed
            )
        )
