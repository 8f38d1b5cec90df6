"""The HTTP contract, in process: TestClient over create_app with a FileStore in a temp dir."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.domain import WINNING_NUMBER as WINNING
from app.main import create_app
from app.settings import Settings
from tests.conftest import DATASET_COUNTS
from tests.helpers import without_log

PROBLEM = "application/problem+json"
CSV = {"content-type": "text/csv"}
JSON = {"content-type": "application/json"}


def make_client(tmp_path: Path, **overrides) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", **{"agencies": 3, **overrides})
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        yield c


def bet(document: str, number: int = 1, first_name: str = "Ana", last_name: str = "López") -> dict:
    return {
        "first_name": first_name,
        "last_name": last_name,
        "document": document,
        "birthdate": "1999-03-17",
        "number": number,
    }


def csv_body(*bets: dict) -> bytes:
    return "".join(
        f"{b['first_name']},{b['last_name']},{b['document']},{b['birthdate']},{b['number']}\n" for b in bets
    ).encode()


def json_body(*bets: dict) -> bytes:
    return orjson.dumps({"bets": list(bets)})


def assert_problem(response, status: int, title: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["type"] == "about:blank"
    if title is not None:
        assert body["title"] == title
    return body


def send(client: TestClient, body: bytes, agency: int = 1, headers: dict | None = None, key: str | None = None):
    """POST a chunk (CSV unless headers say otherwise), with an optional Idempotency-Key."""
    headers = {**CSV, **(headers or {})}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/agencies/{agency}/bets", content=body, headers=headers)


def stored(client: TestClient) -> int:
    response = client.get("/status")
    assert response.status_code == 200
    return response.json()["bets"]


# -- 201 / 200 --------------------------------------------------------------------------------


def test_json_chunk_201(client):
    response = client.post("/agencies/1/bets", content=json_body(bet("1"), bet("2")), headers=JSON)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert without_log(response.json()) == {"agency": 1, "stored": 2}
    assert "Idempotent-Replayed" not in response.headers
    assert stored(client) == 2


def test_csv_chunk_201(client):
    rows = csv_body(bet("1"), bet("2"), bet("3")).replace(b"\n", b"\r\n")
    body = b"first_name,last_name,document,birthdate,number\r\n" + rows
    response = client.post("/agencies/3/bets", content=body, headers={"content-type": "text/csv; charset=utf-8"})
    assert response.status_code == 201
    assert without_log(response.json()) == {"agency": 3, "stored": 3}
    assert stored(client) == 3


def test_idempotent_replay(client):
    body = json_body(bet("1"), bet("2"))
    first = client.post("/agencies/2/bets", content=body, headers={**JSON, "Idempotency-Key": "chunk-0001"})
    assert first.status_code == 201
    again = client.post("/agencies/2/bets", content=body, headers={**JSON, "Idempotency-Key": "chunk-0001"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert without_log(again.json()) == without_log(first.json()) == {"agency": 2, "stored": 2}
    # the same bets sent as CSV, and the key as an sf-string, are the same request
    as_csv = client.post(
        "/agencies/2/bets", content=csv_body(bet("1"), bet("2")), headers={**CSV, "Idempotency-Key": '"chunk-0001"'}
    )
    assert as_csv.status_code == 200
    assert without_log(as_csv.json()) == {"agency": 2, "stored": 2}
    assert stored(client) == 2


def test_same_key_other_body_422(client):
    headers = {**JSON, "Idempotency-Key": "k"}
    assert client.post("/agencies/1/bets", content=json_body(bet("1")), headers=headers).status_code == 201
    body = assert_problem(
        client.post("/agencies/1/bets", content=json_body(bet("2")), headers=headers), 422, "Idempotency key reused"
    )
    assert "Idempotency-Key" in body["detail"]
    assert body["instance"] == "/agencies/1/bets"
    assert stored(client) == 1
    # keys are per agency
    assert client.post("/agencies/2/bets", content=json_body(bet("2")), headers=headers).status_code == 201


def test_invalid_csv_422_names_every_problem_and_stores_nothing(client):
    client.post("/agencies/1/bets", content=csv_body(bet("1")), headers=CSV)
    body = b"Ana,Lopez,1,1999-03-17,1\nAna,Lopez,12x,1999-03-17,1\n\n,Lopez,1,2099-01-01,1\nAna,Lopez,1\n"
    problem = assert_problem(client.post("/agencies/1/bets", content=body, headers=CSV), 422, "Invalid bets")
    assert [(e["index"], e["line"], e["field"]) for e in problem["errors"]] == [
        (1, 2, "document"),
        (2, 4, "first_name"),
        (2, 4, "birthdate"),
        (3, 5, "bet"),
    ]
    assert all(isinstance(e["message"], str) and e["message"] for e in problem["errors"])
    assert problem["error_count"] == 4
    assert problem["detail"] == "4 invalid bet field(s) in a chunk of 4"
    assert stored(client) == 1


def test_invalid_json_422_names_index_and_field(client):
    bad = json_body(bet("1"), bet("2", number=10000), {**bet("3"), "extra": 1})
    problem = assert_problem(client.post("/agencies/1/bets", content=bad, headers=JSON), 422, "Invalid bets")
    assert [(e["index"], e["field"]) for e in problem["errors"]] == [(1, "number"), (2, "extra")]
    assert all("line" not in e for e in problem["errors"])
    assert stored(client) == 0


# -- 404 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("agency", [0, 4, -1, 99999])
def test_unknown_agency_404(client, agency):
    for response in (
        client.post(f"/agencies/{agency}/bets", content=csv_body(bet("1")), headers=CSV),
        client.post(f"/agencies/{agency}/done"),
        client.get(f"/agencies/{agency}/winners"),
        client.get(f"/agencies/{agency}/uploads/u1"),
    ):
        body = assert_problem(response, 404, "Unknown agency")
        assert body["detail"] == f"agency {agency} does not exist: agencies are 1 to 3"
    assert stored(client) == 0
    assert client.get("/status").json()["done_count"] == 0


def test_unknown_route_and_method_are_problems(client):
    assert_problem(client.get("/nope"), 404, "Not found")
    assert_problem(client.get("/agencies/1/bets"), 405, "Method not allowed")
    assert_problem(client.post("/agencies/abc/bets", content=b"", headers=CSV), 404, "Unknown agency")


# -- 409 ---------------------------------------------------------------------------------------


def test_409_after_done_and_after_draw(client):
    assert send(client, csv_body(bet("1")), key="a").status_code == 201
    assert client.post("/agencies/1/done").status_code == 200
    body = assert_problem(send(client, csv_body(bet("2"))), 409, "Agency closed")
    assert "already said done" in body["detail"]
    # a retry of a stored chunk is still answered
    assert send(client, csv_body(bet("1")), key="a").status_code == 200
    assert client.post("/agencies/2/bets", content=csv_body(bet("3")), headers=CSV).status_code == 201
    client.post("/agencies/2/done")
    assert client.post("/agencies/3/done").json()["drawn"] is True
    for agency in (1, 2, 3):
        body = assert_problem(
            client.post(f"/agencies/{agency}/bets", content=csv_body(bet("9")), headers=CSV), 409, "Agency closed"
        )
        assert "draw" in body["detail"]
    assert send(client, csv_body(bet("1")), key="a").status_code == 200
    assert stored(client) == 2


# -- uploads -----------------------------------------------------------------------------------


def test_upload_ranges(client):
    up = {**CSV, "Upload-Id": "sha256-abc", "Upload-Offset": "0"}
    first = csv_body(*[bet(str(i)) for i in range(5)])
    assert client.post("/agencies/1/bets", content=first, headers=up).status_code == 201
    replay = client.post("/agencies/1/bets", content=first, headers=up)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert without_log(replay.json()) == {"agency": 1, "stored": 5}
    nxt = csv_body(*[bet(str(i)) for i in range(5, 8)])
    assert client.post("/agencies/1/bets", content=nxt, headers={**up, "Upload-Offset": "5"}).status_code == 201
    conflict = assert_problem(
        client.post("/agencies/1/bets", content=nxt, headers={**up, "Upload-Offset": "6"}), 409, "Lines already stored"
    )
    assert conflict["committed"] == [[0, 8]]
    mismatch = client.post("/agencies/1/bets", content=csv_body(*[bet(str(i)) for i in range(50, 55)]), headers=up)
    assert_problem(mismatch, 422, "Idempotency key reused")
    progress = client.get("/agencies/1/uploads/sha256-abc")
    assert progress.status_code == 200
    assert {k: v for k, v in progress.json().items() if k != "spans"} == {  # spans: tests/contract
        "upload_id": "sha256-abc",
        "committed": [[0, 8]],
        "bets": 8,
    }
    assert client.get("/agencies/2/uploads/sha256-abc").json() == {
        "upload_id": "sha256-abc",
        "committed": [],
        "bets": 0,
        "spans": [],
    }
    assert stored(client) == 8


@pytest.mark.parametrize(
    "headers",
    [
        {"Upload-Id": "u1"},
        {"Upload-Offset": "0"},
        {"Upload-Id": "u1", "Upload-Offset": "-1"},
        {"Upload-Id": "u1", "Upload-Offset": "1.5"},
        {"Upload-Id": "u1", "Upload-Offset": "1" * 13},
        {"Upload-Id": "u 1", "Upload-Offset": "0"},
        {"Upload-Id": "u/1", "Upload-Offset": "0"},
        {"Upload-Id": "u" * 129, "Upload-Offset": "0"},
    ],
)
def test_bad_upload_headers_400(client, headers):
    response = client.post("/agencies/1/bets", content=csv_body(bet("1")), headers={**CSV, **headers})
    assert_problem(response, 400, "Bad upload headers")
    assert stored(client) == 0


# -- 400 / 413 / 415 ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k" * 256, "k" * 300, "é".encode(), b"a b", b"", b'""', b"tab\there"])
def test_bad_idempotency_key_400(client, key):
    response = client.post("/agencies/1/bets", content=csv_body(bet("1")), headers={**CSV, "Idempotency-Key": key})
    assert_problem(response, 400, "Bad Idempotency-Key")
    assert stored(client) == 0


def test_longest_idempotency_key_ok(client):
    key = "~" * 255
    assert send(client, csv_body(bet("1")), key=key).status_code == 201
    assert send(client, csv_body(bet("1")), key=key).status_code == 200


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"bets": [}', b"\xff"])
def test_bad_json_400(client, body):
    assert_problem(client.post("/agencies/1/bets", content=body, headers=JSON), 400, "Malformed body")


def test_bad_csv_400(client):
    body = assert_problem(send(client, b"Ana,Lopez,1,1999-03-17,1\nJos\xe9,A,1,1999-03-17,1\n"), 400, "Malformed body")
    assert "line 2" in body["detail"]
    assert_problem(client.post("/agencies/1/bets", content=b'Ana,"Lopez,1,1999-03-17,1\n', headers=CSV), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"])
def test_unsupported_media_type_415(client, content_type):
    response = client.post("/agencies/1/bets", content=csv_body(bet("1")), headers={"content-type": content_type})
    assert_problem(response, 415, "Unsupported media type")


def test_missing_content_type_415(client):
    response = client.post("/agencies/1/bets", content=csv_body(bet("1")))
    assert "content-type" not in response.request.headers
    assert_problem(response, 415, "Unsupported media type")


def test_body_over_limit_413(tmp_path):
    with make_client(tmp_path, max_body_bytes=2048) as client:
        small = csv_body(*[bet(str(i)) for i in range(10)])
        assert len(small) < 2048
        assert client.post("/agencies/1/bets", content=small, headers=CSV).status_code == 201
        big = csv_body(*[bet(str(i)) for i in range(100)])
        assert len(big) > 2048
        body = assert_problem(client.post("/agencies/1/bets", content=big, headers=CSV), 413, "Chunk too large")
        assert str(len(big)) in body["detail"]
        big_json = json_body(*[bet(str(i)) for i in range(100)])
        assert_problem(client.post("/agencies/1/bets", content=big_json, headers=JSON), 413)
        # a chunked body (no Content-Length) is counted as it arrives
        chunked = client.post("/agencies/1/bets", content=iter([big[:1500], big[1500:]]), headers=CSV)
        assert "content-length" not in chunked.request.headers
        assert_problem(chunked, 413, "Chunk too large")
        assert stored(client) == 10


def test_too_many_bets_413(tmp_path):
    with make_client(tmp_path, max_bets_per_chunk=3) as client:
        three = [bet(str(i)) for i in range(3)]
        assert without_log(send(client, csv_body(*three)).json()) == {"agency": 1, "stored": 3}
        four = [*three, bet("4")]
        body = assert_problem(send(client, csv_body(*four)), 413, "Chunk too large")
        assert "at most 3 bets" in body["detail"]
        assert_problem(client.post("/agencies/1/bets", content=json_body(*four), headers=JSON), 413, "Chunk too large")
        assert stored(client) == 3


# -- done, winners, status, health -------------------------------------------------------------


def test_round_done_draw_and_winners(tmp_path):
    with make_client(tmp_path, retry_after=7) as client:
        uploads = {
            1: [bet("101", WINNING), bet("102", 1), bet("103", WINNING, "Juan,7574", 'Pérez "7574"')],
            2: [bet("201", WINNING - 1), bet("202", WINNING % 1000)],
            3: [bet("301", WINNING), bet("0000000302", WINNING)],
        }
        for agency, bets in uploads.items():
            assert client.post(f"/agencies/{agency}/bets", content=json_body(*bets), headers=JSON).status_code == 201

        early = client.get("/agencies/1/winners")
        assert_problem(early, 425, "Too early")
        assert early.headers["Retry-After"] == "7"

        assert client.post("/agencies/2/done").json() == {"agency": 2, "done": 1, "expected": 3, "drawn": False}
        assert client.post("/agencies/2/done").json() == {"agency": 2, "done": 1, "expected": 3, "drawn": False}
        assert client.get("/status").json() == {"expected": 3, "done_count": 1, "drawn": False, "bets": 7}
        assert client.get("/rounds/1/agencies?state=done").json()["agencies"] == [2]  # which: a page of them
        assert client.post("/agencies/1/done").json() == {"agency": 1, "done": 2, "expected": 3, "drawn": False}
        assert_problem(client.get("/agencies/3/winners"), 425)
        last = client.post("/agencies/3/done")
        assert last.status_code == 200
        assert last.json() == {"agency": 3, "done": 3, "expected": 3, "drawn": True}
        assert client.post("/agencies/1/done").json() == {"agency": 1, "done": 3, "expected": 3, "drawn": True}

        expected = {a: [b["document"] for b in bets if b["number"] == WINNING] for a, bets in uploads.items()}
        assert expected == {1: ["101", "103"], 2: [], 3: ["301", "0000000302"]}
        for agency in (1, 2, 3):
            response = client.get(f"/agencies/{agency}/winners")
            assert response.status_code == 200
            assert response.json() == {"agency": agency, "winners": expected[agency]}
        assert client.get("/status").json() == {"expected": 3, "done_count": 3, "drawn": True, "bets": 7}


def test_round_with_no_bets_draws(client):
    # Nobody sent a bet: the last done still performs the draw, and nobody won.
    client.post("/agencies/1/done")
    client.post("/agencies/2/done")
    last = client.post("/agencies/3/done")
    assert last.status_code == 200, last.text
    assert last.json() == {"agency": 3, "done": 3, "expected": 3, "drawn": True}
    assert client.get("/agencies/1/winners").json() == {"agency": 1, "winners": []}


def test_status_and_health_shapes(client):
    status = client.get("/status")
    assert status.status_code == 200
    assert status.json() == {"expected": 3, "done_count": 0, "drawn": False, "bets": 0}
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


def test_health_503_when_data_dir_is_gone(tmp_path):
    with make_client(tmp_path) as client:
        assert client.get("/health").status_code == 200
        shutil.rmtree(tmp_path / "data")
        response = client.get("/health")
        body = assert_problem(response, 503, "Storage unavailable")
        assert "not writable" in body["detail"]
        assert response.headers["Retry-After"] == "5"


def test_tokens_401_and_403(tmp_path):
    tokens = {"1": "a" * 16 + "-agency-one", "2": "b" * 16 + "-agency-two", "3": "c" * 16 + "-agency-three"}
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(orjson.dumps(tokens).decode())
    with make_client(tmp_path, tokens_file=tokens_file) as client:
        body = csv_body(bet("1"))
        missing = client.post("/agencies/1/bets", content=body, headers=CSV)
        assert_problem(missing, 401, "Unauthorized")
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert_problem(
            client.post("/agencies/1/bets", content=body, headers={**CSV, "Authorization": "Bearer " + "z" * 30}),
            401,
            "Unauthorized",
        )
        assert_problem(
            client.post("/agencies/1/bets", content=body, headers={**CSV, "Authorization": f"Basic {tokens['1']}"}),
            401,
            "Unauthorized",
        )
        other = {"Authorization": f"Bearer {tokens['2']}"}
        assert_problem(client.post("/agencies/1/bets", content=body, headers={**CSV, **other}), 403, "Forbidden")
        assert_problem(client.post("/agencies/1/done", headers=other), 403, "Forbidden")
        assert_problem(client.get("/agencies/1/winners", headers=other), 403, "Forbidden")
        assert_problem(client.get("/status"), 401, "Unauthorized")  # the round's progress needs a token
        own = {"Authorization": f"Bearer {tokens['1']}"}
        assert client.get("/status", headers=other).json()["bets"] == 0  # any agency's token
        assert without_log(send(client, body, headers=own).json()) == {"agency": 1, "stored": 1}
        assert client.post("/agencies/1/done", headers=own).json()["done"] == 1
        assert client.get("/status", headers=own).json()["done_count"] == 1
        assert client.get("/health").status_code == 200


def test_winners_wait_after_the_draw_answers_at_once(client):
    client.post("/agencies/1/bets", content=csv_body(bet("11", WINNING)), headers=CSV)
    for agency in (1, 2, 3):
        client.post(f"/agencies/{agency}/done")
    response = client.get("/agencies/1/winners", params={"wait": 30})
    assert response.status_code == 200
    assert response.json() == {"agency": 1, "winners": ["11"]}
    assert_problem(client.get("/agencies/1/winners", params={"wait": 61}), 422, "Invalid request")


# -- docs and OpenAPI --------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_are_offline(client, page):
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "cdn" not in html.lower()
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)
    assert assets, "the page loads its assets from somewhere"
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        assert "http" not in asset
        assert client.get(asset).status_code == 200, asset
    if page == "/docs":
        assert any(a.endswith(".css") for a in assets)
        assert "/openapi.json" in html


def test_openapi_documents_the_contract(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/agencies/{agency}/bets"]["post"]
    responses = post["responses"]
    assert {"201", "200", "409", "413", "415", "422"} <= set(responses)
    assert responses["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChunkStored"}
    chunk_stored = spec["components"]["schemas"]["ChunkStored"]["properties"]
    assert chunk_stored["agency"]["examples"] == [1]
    assert chunk_stored["stored"]["examples"]
    for status in ("409", "413", "415", "422"):
        example = responses[status]["content"][PROBLEM]["example"]
        assert example["status"] == int(status)
        assert example["title"] and example["detail"]
    body = post["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/json", "text/csv"}
    assert body["content"]["application/json"]["example"]["bets"][0]["document"] == "30904465"
    assert body["content"]["text/csv"]["example"].count("\n") == 2
    bet_schema = body["content"]["application/json"]["schema"]["properties"]["bets"]["items"]
    assert set(bet_schema["required"]) == {"first_name", "last_name", "document", "birthdate", "number"}
    assert "$defs" not in body["content"]["application/json"]["schema"]

    winners = spec["paths"]["/agencies/{agency}/winners"]["get"]["responses"]
    assert winners["425"]["content"][PROBLEM]["example"]["status"] == 425
    assert "200" in winners
    assert "200" in spec["paths"]["/agencies/{agency}/done"]["post"]["responses"]
    assert set(spec["paths"]) >= {"/status", "/health", "/agencies/{agency}/uploads/{upload_id}"}


# -- fuzz-ish: nasty bodies never reach a 5xx ----------------------------------------------------

BET_FIELDS = b'"last_name":"b","document":"1","birthdate":"2000-01-01"'
NASTY = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b"0",
    b'""',
    b'{"bets": null}',
    b'{"bets": {}}',
    b'{"bets": "abc"}',
    b'{"bets": [null]}',
    b'{"bets": [[]]}',
    b'{"bets": [{}]}',
    b'{"bets": [1e400]}',
    b'{"bets": [{"first_name":"a",' + BET_FIELDS + b',"number":' + b"9" * 5000 + b"}]}",
    b'{"bets": [{"first_name":"a",' + BET_FIELDS + b',"number":-' + b"9" * 30 + b"}]}",
    b'{"bets": [{"first_name":"a",' + BET_FIELDS + b',"number":18446744073709551616}]}',
    b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"bets": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}",
    b"\x00" * 64,
    b'{"bets": [{"first_name":"\\ud800",' + BET_FIELDS + b',"number":1}]}',
    b'{"bets": [{"first_name":"\\udc00x",' + BET_FIELDS + b',"number":1}]}',
    b'{"bets": [{"first_name":"a\\u0000b",' + BET_FIELDS + b',"number":1}]}',
    b'{"bets": [{"first_name":{"$ne":""},' + BET_FIELDS + b',"number":1}]}',
    b'{"bets": [{"first_name":"a",' + BET_FIELDS + b',"number":1}], "bets2": 1}',
    b",,,,\n,,,,\n",
    b",,,,,\n",
    b"a,b,1,2000-01-01,1,6\n",
    "Ana\u2028Bea,B,1,2000-01-01,1\u2028\n".encode(),
    "Ana,Bea\u2029x,1,2000-01-01,1\n".encode(),
    b"\xff\xfe\x00a",
    "a,b,1,2000-01-01,1\n".encode("utf-16"),
    b"\xef\xbb\xbf",
    b'"',
    b'"' * 1001,
    b"x" * 200_000,
    b"\r" * 1000,
    b"\n" * 10_000,
    b"\x00,\x00,\x00,\x00,\x00\n",
    b"first_name,last_name,document,birthdate,number\n",
    b"a,b,1,2000-02-30,1\n",
    b"a,b,\xd9\xa1,2000-01-01,1\n",
    b"a,b,1,2000-01-01,\xd9\xa1\n",
    b"a,b,1,2000-01-01,1\r\na,b,1,2000-01-01\r\n",
    b"a\x85b,c,1,2000-01-01,1\n",
]


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_nasty_bodies_never_5xx(client, content_type):
    for body in NASTY:
        response = client.post("/agencies/1/bets", content=body, headers={"content-type": content_type})
        assert 400 <= response.status_code < 500, (body[:60], response.status_code, response.text[:300])
        assert_problem(response, response.status_code)
    assert stored(client) == 0
    assert client.get("/health").status_code == 200


# -- the course's dataset ------------------------------------------------------------------------


def test_dataset_round(tmp_path, dataset):
    with make_client(tmp_path, agencies=5) as client:
        for agency in range(1, 6):
            path = dataset / f"agency-{agency}.csv"
            response = client.post(f"/agencies/{agency}/bets", content=path.read_bytes(), headers=CSV)
            assert response.status_code == 201, response.text[:500]
            assert without_log(response.json()) == {"agency": agency, "stored": DATASET_COUNTS[agency]}
        assert_problem(client.get("/agencies/5/winners"), 425)
        for agency in range(1, 6):
            assert client.post(f"/agencies/{agency}/done").json()["drawn"] is (agency == 5)
        assert client.get("/status").json() == {"expected": 5, "done_count": 5, "drawn": True, "bets": 78697}
        winners = {a: client.get(f"/agencies/{a}/winners").json()["winners"] for a in range(1, 6)}
        assert {a: len(w) for a, w in winners.items()} == {1: 2, 2: 3, 3: 3, 4: 2, 5: 0}
        for agency in range(1, 6):
            with open(dataset / f"agency-{agency}.csv", newline="", encoding="utf-8") as f:
                expected = [row[2] for row in csv.reader(f) if row and int(row[4]) == WINNING]
            assert winners[agency] == expected
