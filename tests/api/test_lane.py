"""The direct lane (app/lane.py) answers as the whole middleware stack would, and only for POST /bets."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.lane import DirectLane
from app.main import create_app
from app.settings import Settings

TOKENS = {"1": "a" * 20, "2": "b" * 20, "operator": "o" * 20}
CSV = "text/csv"
BET = b"Ana,Lopez,30111222,1999-03-17,7\n"


def requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    """(method, path, headers, body): answers of every kind the bets routes give, and neighbours."""
    one, two = {"Authorization": "Bearer " + TOKENS["1"]}, {"Authorization": "Bearer " + TOKENS["2"]}
    csv, json = {**one, "Content-Type": CSV}, {**one, "Content-Type": "application/json"}
    return [
        ("POST", "/agencies/1/bets", {**csv, "Idempotency-Key": "k1"}, BET),  # 201
        ("POST", "/agencies/1/bets", {**csv, "Idempotency-Key": "k1"}, BET),  # replay, 200
        ("POST", "/agencies/1/bets", {**csv, "Idempotency-Key": "k1"}, BET.replace(b"7\n", b"8\n")),  # 422 key reused
        ("POST", "/agencies/1/bets", {**json}, orjson.dumps({"bets": [{"first_name": "A"}]})),  # 422 invalid
        ("POST", "/agencies/1/bets", {**json}, b"{"),  # 400 malformed
        ("POST", "/agencies/1/bets", {**one, "Content-Type": "text/plain"}, BET),  # 415
        ("POST", "/agencies/1/bets", {"Content-Type": CSV}, BET),  # 401 no token
        ("POST", "/agencies/1/bets", {**two, "Content-Type": CSV}, BET),  # 403 another agency's token
        ("POST", "/agencies/9/bets", {**csv}, BET),  # 404 outside the round
        ("POST", "/agencies/01/bets", {**csv}, BET),  # 404 not a canonical id
        ("POST", "/agencies/1/bets", {**csv, "Idempotency-Key": "a b"}, BET),  # 400 bad key
        ("POST", "/agencies/1/bets", {**csv, "Upload-Id": "u"}, BET),  # 400 offset missing
        ("POST", "/agencies/1/bets", {**csv, "Upload-Id": "u", "Upload-Offset": "0"}, BET * 2),  # 201
        ("POST", "/agencies/1/bets", {**csv, "Upload-Id": "u", "Upload-Offset": "1"}, BET),  # 409 overlap
        ("POST", "/agencies/1/bets", {**csv}, BET * 30),  # 413: more bets than a chunk may carry
        ("POST", "/rounds/1/agencies/1/bets", {**csv, "Idempotency-Key": "k2"}, BET),  # 201, named round
        ("POST", "/rounds/2/agencies/1/bets", {**csv}, BET),  # 409 not the current round
        ("POST", "/rounds/x/agencies/1/bets", {**csv}, BET),  # 404 no such round spelling
        ("POST", "/agencies/1/bets/", {**csv}, BET),  # not the lane's: the stack's redirect
        ("PUT", "/agencies/1/bets", {**csv}, BET),  # 405, from the stack
        ("GET", "/agencies/1/bets", {**one}, b""),  # 405, from the stack
        ("POST", "/agencies/1/done", {**one}, b""),  # another route
    ]


def make(tmp_path: Path, *, lane: bool) -> TestClient:
    tmp_path.mkdir(parents=True, exist_ok=True)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(orjson.dumps(TOKENS).decode())
    app = create_app(Settings(data_dir=tmp_path / "data", agencies=2, tokens_file=tokens, max_bets_per_chunk=20))
    assert isinstance(app.middleware_stack, DirectLane)
    if not lane:
        app.middleware_stack = app.middleware_stack.stack  # every request through the whole stack
    return TestClient(app)


def answers(client: TestClient) -> list[tuple[int, dict[str, str], object]]:
    out = []
    for method, path, headers, body in requests():
        response = client.request(method, path, headers=headers, content=body, follow_redirects=False)
        kept = {k: v for k, v in response.headers.items() if k not in ("date", "server", "content-length")}
        answer = response.json() if response.content else None
        if isinstance(answer, dict) and "log" in answer:
            # Each app has its own salt draws and signing key: the receipt's place is what must agree.
            answer["log"] = {"index": answer["log"]["index"], "size": answer["log"]["size"]}
        out.append((response.status_code, kept, answer))
    return out


def request_count(route: str, status: int) -> float:
    labels = {"method": "POST", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("lottery_request_duration_seconds_count", labels) or 0.0


def test_the_lane_answers_as_the_whole_stack(tmp_path):
    with make(tmp_path / "stack", lane=False) as client:
        expected = answers(client)
    with make(tmp_path / "lane", lane=True) as client:
        got = answers(client)
    assert [a[0] for a in expected] == [201, 200, 422, 422, 400, 415, 401, 403, 404, 404, 400, 400, 201, 409, 413,
                                        201, 409, 404, 307, 405, 405, 200]  # fmt: skip
    for request, want, found in zip(requests(), expected, got, strict=True):
        assert found == want, request


@pytest.mark.parametrize("lane", [True, False])
def test_the_lane_times_requests_by_route_template(tmp_path, lane):
    """The request-duration metric counts a lane's request as the stack's middleware would."""
    route = "/agencies/{agency}/bets"
    before = {status: request_count(route, status) for status in (201, 401)}
    with make(tmp_path, lane=lane) as client:
        headers = {"Authorization": "Bearer " + TOKENS["1"], "Content-Type": CSV}
        assert client.post("/agencies/1/bets", headers=headers, content=BET).status_code == 201
        assert client.post("/agencies/1/bets", headers={"Content-Type": CSV}, content=BET).status_code == 401
    assert request_count(route, 201) == before[201] + 1
    assert request_count(route, 401) == before[401] + 1
