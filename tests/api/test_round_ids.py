# ruff: noqa: F811 - the imported fixtures (backend) are parameters here
"""A round id is a type at the edge (issue 20): exactly ``[1-9][0-9]*`` within 1..10**9.

Any other spelling of a round on a ``/rounds/{round}/...`` route is 404 or 422 and never
another round. The issue's reproduction: with round 1 drawn and round 2 open,
``POST /rounds/1.0/agencies/1/bets`` stored the chunk in round 2, ``/rounds/1.0/.../done``
marked the agency done in round 2, ``GET /rounds/+1/.../winners`` answered round 2's 425.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.settings import Settings
from tests.contract.test_store_contract import Backend, backend, pg_url  # noqa: F401 - fixtures

CSV = {"content-type": "text/csv"}
BET = b"Ana,Lopez,30000001,1999-03-17,7574\n"
HIGHEST_ROUND = 10**9


def encoded(text: str) -> str:
    """Every byte percent-encoded, so the client normalizes nothing (``..`` stays a name)."""
    return "".join(f"%{b:02X}" for b in text.encode())


def canonical(text: str) -> bool:
    return text.isascii() and text.isdigit() and text[0] != "0" and int(text) <= HIGHEST_ROUND


# Spellings int() or pydantic's lax int would read as 1 or 2, and arbitrary text around them.
NEAR_MISSES = st.sampled_from(
    ["1.0", "+1", " 1", "1 ", "1_0", "01", "001", "2.", "2.00", "+2", "1e0", "0x1", "１", "٢", "-1", "0", "-0",
     "1\n", "\t2", "1000000001", "9" * 30, "2 ", "１.0", "1,0", "true", "1" * 12]
)  # fmt: skip
AROUND = st.builds(
    lambda pre, n, post: f"{pre}{n}{post}",
    st.sampled_from(["", "+", "0", " ", "-", "\u00a0"]),
    st.sampled_from(["1", "2"]),
    st.sampled_from(["", ".0", "_0", " ", "\x00", "e0", "\u0660"]),
)
SPELLINGS = st.one_of(NEAR_MISSES, AROUND, st.text(min_size=1, max_size=12)).filter(
    lambda s: not canonical(s) and "%" not in s and "/" not in s
)
# No '%': Starlette's TestClient unquotes the path a second time (see tests/api/test_agency_ids.py).
# No '/': a decoded %2F splits the path (``/rounds/1%2F`` is ``/rounds/1/``, redirected to ``/rounds/1``).


@pytest.fixture
def client(backend: Backend, tmp_path):
    """Round 1 drawn (one winning bet of agency 1), round 2 open and empty."""
    settings = Settings(data_dir=tmp_path / "app-data", agencies=2)
    with TestClient(create_app(settings, backend.make(agencies=2))) as c:
        assert c.post("/agencies/1/bets", content=BET, headers=CSV).status_code == 201
        for agency in (1, 2):
            assert c.post(f"/agencies/{agency}/done").json()["drawn"] is (agency == 2)
        assert c.post("/rounds", json={}).status_code == 201
        yield c


def round_two(client: TestClient) -> tuple[int, list[int]]:
    info = client.get("/rounds/2").json()
    done = client.get("/rounds/2/agencies", params={"state": "done"}).json()["agencies"]
    assert info["done_count"] == len(done)
    return info["bets"], done


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spelling=SPELLINGS)
def test_a_round_spelled_otherwise_is_no_round(client: TestClient, spelling: str) -> None:
    at = f"/rounds/{encoded(spelling)}"
    answers = {
        "bets": client.post(f"{at}/agencies/1/bets", content=BET, headers=CSV).status_code,
        "done": client.post(f"{at}/agencies/2/done").status_code,
        "winners": client.get(f"{at}/agencies/1/winners").status_code,
        "uploads": client.get(f"{at}/agencies/1/uploads").status_code,
        "round": client.get(at).status_code,
        "agencies": client.get(f"{at}/agencies", params={"state": "done"}).status_code,
    }
    assert set(answers.values()) <= {404, 422}, (spelling, answers)
    assert round_two(client) == (0, []), spelling  # nothing landed in the current round


def test_the_canonical_spelling_names_its_round(client: TestClient) -> None:
    won = client.get("/rounds/1/agencies/1/winners")
    assert won.status_code == 200 and won.json()["winners"] == ["30000001"]
    assert client.get("/rounds/2/agencies/1/winners").status_code == 425
    past = client.post("/rounds/1/agencies/1/bets", content=BET, headers=CSV)
    assert past.status_code == 409 and past.json()["current_round"] == 2
    assert client.post("/rounds/2/agencies/1/bets", content=BET, headers=CSV).status_code == 201
    assert client.post("/rounds/2/agencies/2/done").json()["done"] == 1
    assert round_two(client) == (1, [2])
    for unknown in ("3", str(HIGHEST_ROUND)):
        assert client.get(f"/rounds/{unknown}/agencies/1/winners").status_code == 404
        assert client.post(f"/rounds/{unknown}/agencies/1/bets", content=BET, headers=CSV).status_code == 409
