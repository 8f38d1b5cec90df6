"""Ingest rules seen through the HTTP API (TestClient over create_app, file store in a temp dir):
ambiguous input is refused with the right status, and an upload's chunks carry bet lines only."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.helpers import without_log

BETS = b"Ana,Lopez,1,2000-01-01,1\nBea,Lopez,2,2000-01-02,2\n"
HEADER = b"first_name,last_name,document,birthdate,number\n"


@pytest.fixture
def client(tmp_path: Path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", agencies=3))) as c:
        yield c


def stored(client: TestClient) -> int:
    return client.get("/status").json()["bets"]


def upload(offset: int = 0, upload_id: str = "file-1") -> dict[str, str]:
    return {"content-type": "text/csv", "Upload-Id": upload_id, "Upload-Offset": str(offset)}


@pytest.mark.parametrize(
    "body, line, what",
    [
        (HEADER + BETS, 1, "a header line"),
        (BETS + b"\n", 3, "a blank line"),
        (BETS + HEADER + BETS, 3, "a header line"),
    ],
)
def test_upload_chunk_with_a_line_that_is_not_a_bet_is_422_and_stores_nothing(client, body, line, what):
    response = client.post("/agencies/1/bets", content=body, headers=upload())
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"].startswith(f"line {line} is {what}")
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(line, "bet")]
    assert stored(client) == 0
    assert client.get("/agencies/1/uploads/file-1").json()["committed"] == []


def test_same_chunk_without_upload_id_is_accepted_and_the_header_skipped(client):
    response = client.post("/agencies/1/bets", content=HEADER + BETS + b"\n", headers={"content-type": "text/csv"})
    assert (response.status_code, without_log(response.json())) == (201, {"agency": 1, "stored": 2})
    assert stored(client) == 2


def test_upload_chunk_of_bet_lines_is_stored(client):
    response = client.post("/agencies/1/bets", content=BETS, headers=upload())
    assert (response.status_code, without_log(response.json())) == (201, {"agency": 1, "stored": 2})
    assert client.get("/agencies/1/uploads/file-1").json()["committed"] == [[0, 2]]


@pytest.mark.parametrize(
    "content_type", ["text/csv; charset=latin-1", 'text/csv; charset="ISO-8859-1"', "application/json; charset=utf-16"]
)
def test_charset_other_than_utf8_is_415_naming_utf8(client, content_type):
    body = "Jos\u00e9,L\u00f3pez,1,2000-01-01,1\n".encode("latin-1")
    response = client.post("/agencies/1/bets", content=body, headers={"content-type": content_type})
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "charset=utf-8" in response.json()["detail"]
    assert stored(client) == 0


def test_duplicate_key_in_a_json_bet_is_422_naming_it(client):
    bet = b'{"first_name": "Ana", "last_name": "L", "document": "1", "birthdate": "2000-01-01", "number": 1'
    body = b'{"bets": [' + bet + b', "number": 7574}]}'
    response = client.post("/agencies/1/bets", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"index": 0, "field": "number", "message": "is given more than once"}]
    assert stored(client) == 0


def test_duplicate_top_level_key_is_422_naming_it(client):
    one = orjson.dumps([{"first_name": "A", "last_name": "L", "document": "1", "birthdate": "2000-01-01", "number": 1}])
    body = b'{"bets": ' + one + b', "bets": ' + one + b"}"
    response = client.post("/agencies/1/bets", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == 'the top-level key "bets" is given more than once'
