# ruff: noqa: F811 - the imported fixtures (backend) are parameters here
"""The rounds routes (issue 11) in process, over both backends: shapes, paging, the operator's
token, and the round-scoped agency routes."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.contract.test_store_contract import Backend, backend, pg_url  # noqa: F401 - fixtures
from tests.helpers import without_log

CSV = {"content-type": "text/csv"}
TOKENS = {"1": "a" * 20, "2": "b" * 20, "7": "c" * 20, "100000": "d" * 20, "operator": "o" * 20}


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@pytest.fixture
def client(backend: Backend, tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    settings = Settings(data_dir=tmp_path / "app-data", agencies=2, tokens_file=tokens)
    with TestClient(create_app(settings, backend.make(agencies=2))) as c:
        yield c


def bet(document: int, number: int = 7574) -> bytes:
    return f"Ana,López,{document},1999-03-17,{number}\n".encode()


def draw(client: TestClient, round_id: int, agencies: int) -> None:
    for a in range(1, agencies + 1):
        r = client.post(f"/rounds/{round_id}/agencies/{a}/done", headers=bearer(str(a)))
        assert r.status_code == 200, r.text


def test_only_the_operator_opens_a_round(client: TestClient) -> None:
    assert client.post("/rounds").status_code == 401
    assert client.post("/rounds", headers={"Authorization": "Bearer " + "x" * 20}).status_code == 401
    forbidden = client.post("/rounds", headers=bearer("1"))
    assert forbidden.status_code == 403 and forbidden.json()["title"] == "Forbidden"
    still_open = client.post("/rounds", headers=bearer("operator"))
    assert still_open.status_code == 409
    assert still_open.json()["title"] == "Round still open" and still_open.json()["current_round"] == 1
    # the operator's token uploads nothing for an agency: a valid token, for other acts (403, saying so)
    refused = client.post("/agencies/1/bets", content=bet(1), headers={**CSV, **bearer("operator")})
    assert refused.status_code == 403 and "operator's token" in refused.json()["detail"]
    # anyone with a token reads the rounds; nobody without one
    assert client.get("/rounds").status_code == 401
    assert client.get("/rounds", headers=bearer("2")).status_code == 200


def test_rounds_read_as_the_issue_says(client: TestClient) -> None:
    r = client.post("/rounds/1/agencies/1/bets", content=bet(30000001), headers={**CSV, **bearer("1")})
    assert r.status_code == 201
    draw(client, 1, 2)
    opened = client.post("/rounds", json={"agencies": 7, "winning_number": "random"}, headers=bearer("operator"))
    assert opened.status_code == 201, opened.text
    body = opened.json()
    assert set(body) == {
        "round", "state", "agencies", "winning_number", "random", "done_count", "bets", "winners", "opened_at",
        "drawn_at", "log", "seed_commitment", "draw",
    }  # fmt: skip
    # The transparency log's fields (null where the backend keeps none: PostgreSQL, for now).
    logged = body["log"] is not None
    assert (body["seed_commitment"] is not None, body["draw"]) == (logged, None)
    assert {k: body[k] for k in ("round", "state", "agencies", "winning_number", "random", "done_count", "bets")} == {
        "round": 2, "state": "open", "agencies": 7, "winning_number": None, "random": True, "done_count": 0, "bets": 0
    }  # fmt: skip
    assert body["drawn_at"] is None and body["winners"] is None

    first = client.get("/rounds/1", headers=bearer("operator")).json()
    assert (first["state"], first["agencies"], first["winning_number"], first["done_count"], first["bets"]) == (
        "drawn", 2, 7574, 2, 1
    )  # fmt: skip
    assert first["winners"] == 1 and first["drawn_at"] is not None
    listing = client.get("/rounds", headers=bearer("operator")).json()
    assert [r["round"] for r in listing["rounds"]] == [2, 1] and listing["next"] is None
    page = client.get("/rounds", params={"limit": 1}, headers=bearer("operator")).json()
    assert [r["round"] for r in page["rounds"]] == [2] and page["next"] == "/rounds?before=2&limit=1"
    older = client.get(page["next"], headers=bearer("operator")).json()
    assert [r["round"] for r in older["rounds"]] == [1] and older["next"] is None

    # agency 7 exists in round 2 only; its token was in the file all along
    assert client.post("/agencies/7/bets", content=bet(2), headers={**CSV, **bearer("7")}).status_code == 201
    assert client.get("/rounds/1/agencies/7/winners", headers=bearer("7")).status_code == 404
    # each agency reads its own winners of any round
    assert client.get("/rounds/1/agencies/1/winners", headers=bearer("1")).json() == {
        "agency": 1, "winners": ["30000001"]
    }  # fmt: skip
    assert client.get("/rounds/1/agencies/1/winners", headers=bearer("2")).status_code == 403
    assert client.get("/agencies/1/winners", headers=bearer("1")).status_code == 425  # the current round: round 2


def test_bets_and_done_for_another_round_are_409_naming_the_current_one(client: TestClient) -> None:
    draw(client, 1, 2)
    assert client.post("/rounds", headers=bearer("operator")).status_code == 201
    for round_id in (1, 3):
        r = client.post(f"/rounds/{round_id}/agencies/1/bets", content=bet(1), headers={**CSV, **bearer("1")})
        assert r.status_code == 409 and r.json()["title"] == "Not the current round", r.text
        assert r.json()["current_round"] == 2 and "the current round is 2" in r.json()["detail"]
    assert client.post("/rounds/3/agencies/1/done", headers=bearer("1")).status_code == 409
    assert client.get("/rounds/3", headers=bearer("1")).status_code == 404
    assert client.get("/rounds/3/agencies/1/uploads", headers=bearer("1")).status_code == 404
    assert (
        client.get("/rounds/0", headers=bearer("1")).status_code == 404
    )  # no round is named 0 (app.rounds.parse_round_id)
    assert client.post("/rounds/2/agencies/1/bets", content=bet(1), headers={**CSV, **bearer("1")}).status_code == 201
    status = client.get("/status", headers=bearer("operator")).json()
    assert status == {"expected": 2, "done_count": 0, "drawn": False, "bets": 1}  # /status: the current round


def test_a_round_of_a_countrys_agencies(client: TestClient) -> None:
    """Issue 21: up to 100,000 agencies a round; ids 1..100000 exist in it, 100001 does not."""
    draw(client, 1, 2)
    too_many = client.post("/rounds", json={"agencies": 100_001}, headers=bearer("operator"))
    assert too_many.status_code == 422, too_many.text
    opened = client.post("/rounds", json={"agencies": 100_000}, headers=bearer("operator"))
    assert opened.status_code == 201 and opened.json()["agencies"] == 100_000, opened.text
    stored = client.post("/rounds/2/agencies/100000/bets", content=bet(1), headers={**CSV, **bearer("100000")})
    assert stored.status_code == 201 and without_log(stored.json()) == {"agency": 100_000, "stored": 1}, stored.text
    for agency in ("100001", "999999", "1000000"):
        r = client.post(f"/rounds/2/agencies/{agency}/bets", content=bet(1), headers={**CSV, **bearer("1")})
        assert r.status_code == 404, (agency, r.text)
    assert client.post("/agencies/1/done", headers=bearer("1")).status_code == 200
    done = client.post("/agencies/100000/done", headers=bearer("100000"))
    assert done.status_code == 200 and done.json() == {
        "agency": 100_000,
        "done": 2,
        "expected": 100_000,
        "drawn": False,
    }


def agencies_page(client: TestClient, query: str, who: str = "2") -> dict:
    r = client.get(f"/rounds/2/agencies?{query}", headers=bearer(who))
    assert r.status_code == 200, (query, r.text)
    return r.json()


def test_a_rounds_agencies_are_listed_a_page_at_a_time(client: TestClient) -> None:
    """Issue 21: /rounds/{n} counts the done agencies; /rounds/{n}/agencies lists them (or the
    pending ones) a page at a time, ``next`` linking the rest, to anyone with a token."""
    draw(client, 1, 2)
    assert client.post("/rounds", json={"agencies": 100_000}, headers=bearer("operator")).status_code == 201
    for agency in ("2", "1", "100000"):
        assert client.post(f"/agencies/{agency}/done", headers=bearer(agency)).status_code == 200
    round_two = client.get("/rounds/2", headers=bearer("7")).json()
    assert (round_two["done_count"], round_two["agencies"]) == (3, 100_000) and "done" not in round_two
    assert client.get("/rounds", headers=bearer("7")).json()["rounds"][0] == round_two
    assert agencies_page(client, "state=done") == {
        "round": 2,
        "state": "done",
        "agencies": [1, 2, 100_000],
        "next": None,
    }
    first = agencies_page(client, "state=done&limit=2")
    assert first == {
        "round": 2,
        "state": "done",
        "agencies": [1, 2],
        "next": "/rounds/2/agencies?state=done&after=2&limit=2",
    }
    assert agencies_page(client, first["next"].split("?")[1])["agencies"] == [100_000]
    pending = agencies_page(client, "state=pending&limit=3", who="operator")
    assert (pending["state"], pending["agencies"]) == ("pending", [3, 4, 5])
    assert pending["next"] == "/rounds/2/agencies?state=pending&after=5&limit=3"
    assert len(agencies_page(client, "state=pending")["agencies"]) == 100  # the default page
    assert agencies_page(client, "state=pending&after=99990&limit=1000")["agencies"] == list(range(99_991, 100_000))
    assert agencies_page(client, "state=pending&after=99999")["next"] is None
    assert agencies_page(client, "state=done&after=100000")["agencies"] == []
    assert (
        agencies_page(client, "state=done", who="1")["agencies"]
        == agencies_page(client, "state=done&after=0")["agencies"]
    )
    first_round = client.get("/rounds/1/agencies?state=done", headers=bearer("1")).json()
    assert first_round["agencies"] == [1, 2] and client.get("/rounds/1", headers=bearer("1")).json()["done_count"] == 2
    assert client.get("/rounds/2/agencies?state=done").status_code == 401
    assert (
        client.get("/rounds/2/agencies?state=done", headers={"Authorization": "Bearer " + "x" * 20}).status_code == 401
    )
    assert client.get("/rounds/3/agencies?state=done", headers=bearer("1")).status_code == 404
    for bad in (
        "",
        "state=all",
        "state=done&limit=0",
        "state=done&limit=1001",
        "state=done&after=-1",
        "state=done&after=x",
    ):
        assert client.get(f"/rounds/2/agencies?{bad}", headers=bearer("1")).status_code == 422, bad


def test_bad_bodies_and_methods(client: TestClient) -> None:
    draw(client, 1, 2)
    for body in ({"agencies": 0}, {"winning_number": 10_000}, {"winning_number": "lucky"}, {"other": 1}):
        r = client.post("/rounds", json=body, headers=bearer("operator"))
        assert r.status_code == 422, (body, r.text)
    assert client.get("/rounds/1", headers=bearer("1")).json()["state"] == "drawn"  # nothing was opened
    r = client.put("/rounds", headers=bearer("operator"))
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
