"""Only plain ASCII digits name an agency (issue 9, item 7), and with tokens on, nobody without a
valid token learns which agencies exist (issue 10).

``int()`` reads ``1.0``? no, but ``+1``, `` 1``, ``1_0``, ``١`` (Arabic-Indic one) and ``01`` it
does: each was an alias of agency 1 or 10. Leading zeros are refused too: one agency, one name.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.api.test_api import CSV, bet, csv_body, make_client

AGENCIES = 3


def canonical(text: str) -> bool:
    return text in {str(n) for n in range(1, AGENCIES + 1)}


def _aliases(n: int) -> list[str]:
    return [f"{n}.0", f"+{n}", f" {n}", f"{n} ", f"0{n}", f"00{n}", f"{n}_0", f"1_{n}", f"{n}e0", f"-{n}", f"0x{n}"]


non_canonical_ids = st.one_of(
    st.integers(1, AGENCIES).flatmap(lambda n: st.sampled_from(_aliases(n))),
    st.integers(1, AGENCIES).map(lambda n: chr(0xFF10 + n)),  # fullwidth digits
    st.integers(1, AGENCIES).map(lambda n: chr(0x0660 + n)),  # Arabic-Indic digits
    st.sampled_from(["¹", "²", "0", "4", "99999", "9" * 5000, "1\n", "\t1", "1\x00", "abc", "1/.."]),
    st.text(min_size=1, max_size=12),
).filter(lambda text: not canonical(text) and "%" not in text)
# No '%': Starlette's TestClient unquotes the path a second time ('%2531' arrives as '1'), which
# the real server does not; tests/integration/test_limits.py sends such paths to gunicorn.


def requests_for(agency_text: str) -> list[tuple[str, str, dict]]:
    base = f"/agencies/{quote(agency_text, safe='')}"
    body = csv_body(bet("30904465", 7574))
    return [
        ("POST", base + "/bets", {"content": body, "headers": {**CSV, "Idempotency-Key": "k"}}),
        (
            "POST",
            base + "/bets",
            {"content": orjson.dumps({"bets": [bet("1")]}), "headers": {"Content-Type": "application/json"}},
        ),
        ("POST", base + "/done", {}),
        ("GET", base + "/winners", {}),
        ("GET", base + "/uploads/u1", {}),
        ("GET", base + "/uploads", {}),
    ]


def test_every_agency_route_is_in_these_tests() -> None:
    """The agency routes check the token and the id each in its own signature (no router-wide
    dependency, for the hot path's sake): a new route must join the requests above."""
    from app.routes.agencies import router

    sent = {(method, path.replace("/agencies/x", "/agencies/{agency}")) for method, path, _ in requests_for("x")}
    routes = {
        (method, route.path.replace("/uploads/{upload_id}", "/uploads/u1"))
        for route in router.routes
        for method in route.methods
    }
    assert routes == sent


@pytest.fixture(scope="module")
def open_client(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("ids"), agencies=AGENCIES) as client:
        yield client


@pytest.fixture(scope="module")
def secured_client(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids-tokens")
    tokens = {str(a): f"token-of-agency-{a}-0123456789" for a in range(1, AGENCIES + 1)}
    (root / "tokens.json").write_bytes(orjson.dumps(tokens))
    with make_client(root, agencies=AGENCIES, tokens_file=root / "tokens.json") as client:
        yield client, tokens


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agency_text=non_canonical_ids)
@example(agency_text="1.0")
@example(agency_text="+1")
@example(agency_text=" 1")
@example(agency_text="1_0")
@example(agency_text="01")
def test_only_plain_digits_name_an_agency(open_client, agency_text: str) -> None:
    for method, path, kwargs in requests_for(agency_text):
        response = open_client.request(method, path, **kwargs)
        assert response.status_code == 404, (agency_text, path, response.status_code, response.text)
    status = open_client.get("/status").json()
    assert (status["bets"], status["done_count"]) == (0, 0)


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agency_text=st.one_of(non_canonical_ids, st.integers(-5, 10**6).map(str)))
@example(agency_text="99")
@example(agency_text="2")
def test_without_a_valid_token_every_agency_id_is_401(secured_client, agency_text: str) -> None:
    client, _ = secured_client
    for auth in ({}, {"Authorization": "Bearer not-a-token-of-anyone-0123456789"}):
        for method, path, kwargs in requests_for(agency_text):
            headers = {**kwargs.get("headers", {}), **auth}
            response = client.request(method, path, **{**kwargs, "headers": headers})
            if response.status_code == 404 and response.json()["title"] == "Not found":
                continue  # no route at all (an id with '/' in it): no agency was looked up
            assert response.status_code == 401, (agency_text, path, response.status_code, response.text)
            assert response.json()["detail"] != "" and "agencies are" not in response.json()["detail"]
    assert client.get("/status").status_code == 401


def test_status_needs_any_agencys_token_and_health_stays_open(secured_client) -> None:
    client, tokens = secured_client
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    for token in tokens.values():
        response = client.get("/status", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json()["bets"] == 0
    assert client.get("/health").status_code == 200


def test_a_round_of_100000_agencies_has_ids_up_to_100000(tmp_path) -> None:
    """Issue 21: LOTTERY_AGENCIES up to 100,000 (six digits); one past it is no agency (404)."""
    with make_client(tmp_path, agencies=100_000) as client:
        assert client.post("/agencies/100000/bets", content=csv_body(bet("1")), headers=CSV).status_code == 201
        for agency in ("100001", "999999", "1000000", "0100000"):
            response = client.post(f"/agencies/{agency}/bets", content=csv_body(bet("2")), headers=CSV)
            assert response.status_code == 404, (agency, response.text)
        assert client.post("/agencies/100000/done").json() == {
            "agency": 100_000,
            "done": 1,
            "expected": 100_000,
            "drawn": False,
        }


def test_the_round_recorded_agency_count_decides_which_ids_exist(tmp_path) -> None:
    """The store's agency count (what the round recorded) wins over this process's settings."""
    with make_client(tmp_path, agencies=AGENCIES) as client:
        store = client.app.state.store
        store.round_agencies = lambda round_id=None, fresh=False: 2  # as a round recorded with 2 agencies says
        store.known_agencies = lambda round_id: 2
        assert client.post("/agencies/3/bets", content=csv_body(bet("1")), headers=CSV).status_code == 404
        assert client.post("/agencies/2/bets", content=csv_body(bet("1")), headers=CSV).status_code == 201
