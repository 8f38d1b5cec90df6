"""The upload routes of CONTRACT-uploads.md over both backends: each stored range's digest, as
the server computes it from the raw body, and an agency's list of uploads."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.contract.test_store_contract import Backend, backend, pg_url  # noqa: F401 - fixtures

CSV = {"content-type": "text/csv"}


def lines(first: int, n: int) -> list[bytes]:
    return [f"Ana {i},López,{30000000 + i},1999-03-17,{i % 10}".encode() for i in range(first, first + n)]


def lf(rows: list[bytes]) -> bytes:
    return b"".join(row + b"\n" for row in rows)


def crlf(rows: list[bytes]) -> bytes:
    return b"".join(row + b"\r\n" for row in rows)


@pytest.fixture
def client(backend: Backend, tmp_path):  # noqa: F811 - the imported fixture: files and PostgreSQL
    settings = Settings(data_dir=tmp_path / "app-data", agencies=3)
    with TestClient(create_app(settings, backend.make())) as c:
        yield c


def send(client: TestClient, body: bytes, offset: int, upload_id: str = "up-1", agency: int = 1):
    headers = {**CSV, "Upload-Id": upload_id, "Upload-Offset": str(offset)}
    return client.post(f"/agencies/{agency}/bets", content=body, headers=headers)


def test_spans_carry_the_digest_of_each_chunks_body_lf_normalized(client):
    first, second = lines(0, 5), lines(5, 3)
    assert send(client, crlf(first), 0).status_code == 201  # sent with CRLF: digested as LF
    assert send(client, lf(second), 5).status_code == 201
    replay = send(client, lf(first), 0)  # the same bets with LF: a replay; the first digest stays
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (200, "true")
    assert send(client, crlf(lines(20, 2)), 20).status_code == 201
    sha = lambda body: hashlib.sha256(body).hexdigest()  # noqa: E731
    state = client.get("/agencies/1/uploads/up-1").json()
    for span in state["spans"]:  # the log's fields: tests/integration/test_transparency_log.py
        span.pop("log_index"), span.pop("salt")
    assert state == {
        "upload_id": "up-1",
        "committed": [[0, 8], [20, 22]],
        "bets": 10,
        "spans": [
            {"start": 0, "end": 5, "digest": sha(lf(first))},
            {"start": 5, "end": 8, "digest": sha(lf(second))},
            {"start": 20, "end": 22, "digest": sha(lf(lines(20, 2)))},
        ],
    }


def test_chunks_without_an_upload_id_list_no_upload(client):
    assert client.post("/agencies/1/bets", content=lf(lines(0, 3)), headers=CSV).status_code == 201
    assert client.get("/agencies/1/uploads").json() == {"uploads": []}


def test_an_agencys_uploads(client):
    send(client, lf(lines(0, 4)), 0, "file-b")
    send(client, lf(lines(0, 3)), 0, "file-a")
    send(client, lf(lines(10, 2)), 10, "file-b")
    send(client, lf(lines(0, 5)), 0, "file-a", agency=2)
    assert client.get("/agencies/1/uploads").json() == {
        "uploads": [
            {"upload_id": "file-b", "bets": 6, "chunks": 2},
            {"upload_id": "file-a", "bets": 3, "chunks": 1},
        ]
    }
    assert client.get("/agencies/2/uploads").json() == {"uploads": [{"upload_id": "file-a", "bets": 5, "chunks": 1}]}
    assert client.get("/agencies/3/uploads").json() == {"uploads": []}
    assert client.get("/agencies/4/uploads").status_code == 404
