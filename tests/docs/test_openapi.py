"""The OpenAPI document as people and tools read it: valid, exact, and safe to "Try it out".

Each app builds its own document from its settings, so both an open server and one with
tokens are checked. The document is validated by openapi-spec-validator (OpenAPI 3.1), and
every example it shows is sent to the app and compared with the real answer.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import jsonschema
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from app import tokens as tokens_module
from app.main import create_app
from app.openapi import HEADER_SCHEMAS, ROUTE_422
from app.settings import Settings

PROBLEM = "application/problem+json"
BETS = "/agencies/{agency}/bets"
AGENCY_ROUTES = [
    ("post", BETS),
    ("post", "/agencies/{agency}/done"),
    ("get", "/agencies/{agency}/winners"),
    ("get", "/agencies/{agency}/uploads/{upload_id}"),
]


def make_client(tmp_path: Path, **overrides) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path / "data", **{"agencies": 3, **overrides})))


def document(tmp_path: Path, **overrides) -> dict:
    with make_client(tmp_path, **overrides) as client:
        return client.get("/openapi.json").json()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    tokens_module.write(tmp_path / "secrets", tokens_module.make(3))
    return tmp_path / "secrets" / "tokens.json"


def walk(node: object):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_the_document_is_valid_openapi_with_and_without_tokens(tmp_path, tokens_file):
    validate(document(tmp_path / "open"))
    validate(document(tmp_path / "tokens", tokens_file=tokens_file))


def test_bearer_auth_is_declared_only_when_the_server_has_tokens(tmp_path, tokens_file):
    open_doc = document(tmp_path / "open")
    assert "securitySchemes" not in open_doc["components"]
    assert not [op for item in open_doc["paths"].values() for op in item.values() if "security" in op]

    with_tokens = document(tmp_path / "tokens", tokens_file=tokens_file)
    assert with_tokens["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for method, path in AGENCY_ROUTES:
        assert with_tokens["paths"][path][method]["security"] == [{"HTTPBearer": []}]
    assert with_tokens["paths"]["/status"]["get"]["security"] == [
        {"HTTPBearer": []}
    ]  # the round's progress is not public
    assert "security" not in with_tokens["paths"]["/health"]["get"]


def test_header_parameters_are_plain_schemas_with_patterns_and_lengths(tmp_path):
    doc = document(tmp_path)
    headers = {p["name"]: p for p in doc["paths"][BETS]["post"]["parameters"] if p["in"] == "header"}
    assert set(headers) == {"Idempotency-Key", "Upload-Id", "Upload-Offset", "Lottery-Salt"}
    for parameter in headers.values():
        assert parameter["required"] is False
        assert "anyOf" not in parameter["schema"], parameter
    assert headers["Idempotency-Key"]["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[!-~]+$",
    }
    assert headers["Upload-Id"]["schema"]["maxLength"] == 128
    assert headers["Upload-Offset"]["schema"]["type"] == "integer"
    assert not [n for n in walk(doc) if isinstance(n, dict) and "prefixItems" in n]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_schema_valid_header_value_is_accepted(tmp_path_factory, data):
    """What the document allows, the server takes: a schema-valid header never gets 400."""
    key_schema, id_schema, offset_schema = (
        HEADER_SCHEMAS[h] for h in ("Idempotency-Key", "Upload-Id", "Upload-Offset")
    )
    key = data.draw(st.from_regex(r"[!-~]{1,255}", fullmatch=True).filter(lambda k: k != '""'))
    upload_id = data.draw(st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True))
    offset = data.draw(st.integers(offset_schema["minimum"], offset_schema["maximum"]))
    jsonschema.validate(key, key_schema)
    jsonschema.validate(upload_id, id_schema)
    with make_client(tmp_path_factory.mktemp("headers")) as client:
        answer = client.post(
            "/agencies/1/bets",
            content=b"Ana,Paz,1,1990-01-01,1\n",
            headers={
                "content-type": "text/csv",
                "Idempotency-Key": key,
                "Upload-Id": upload_id,
                "Upload-Offset": str(offset),
            },
        )
    assert answer.status_code == 201, answer.text


def test_problem_details_has_every_member_the_api_sends(tmp_path):
    problem = document(tmp_path)["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail", "instance", "errors", "error_count", "committed"} <= set(
        problem["properties"]
    )
    committed = problem["properties"]["committed"]["anyOf"][0]
    assert committed["items"] == {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}


def test_upload_progress_ranges_are_arrays_of_two_integers(tmp_path):
    committed = document(tmp_path)["components"]["schemas"]["UploadProgress"]["properties"]["committed"]
    assert committed["items"] == {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}


@pytest.mark.parametrize("winning", [7574, 1234, 9325, 1235])
def test_try_it_out_examples_never_win_and_say_they_store_real_bets(tmp_path, winning):
    doc = document(tmp_path, winning_number=winning)
    body = doc["paths"][BETS]["post"]["requestBody"]
    assert "stores these bets for real" in body["description"]
    as_json = body["content"]["application/json"]["example"]
    as_csv = body["content"]["text/csv"]["example"]
    numbers = [b["number"] for b in as_json["bets"]] + [int(r[4]) for r in csv.reader(io.StringIO(as_csv))]
    item = body["content"]["application/json"]["schema"]["properties"]["bets"]["items"]
    numbers += item["properties"]["number"]["examples"]
    assert numbers and winning not in numbers
    with make_client(tmp_path / "try", winning_number=winning, agencies=1) as client:
        assert client.post("/agencies/1/bets", json=as_json).status_code == 201
        assert client.post("/agencies/1/bets", content=as_csv, headers={"content-type": "text/csv"}).status_code == 201
        assert client.post("/agencies/1/done").json()["drawn"] is True
        assert client.get("/agencies/1/winners").json()["winners"] == []


# The request each documented 422 example describes (see the comments in app/openapi.py).
REQUESTS_422 = {
    ("post", BETS): lambda c: c.post(
        "/agencies/3/bets",
        content=b"Ana,Gomez,01234567,1990-01-01,42\nLuis,Paz,12a,1990-01-01,42\n",
        headers={"content-type": "text/csv"},
    ),
    ("get", "/agencies/{agency}/winners"): lambda c: c.get("/agencies/1/winners", params={"wait": 61}),
    ("get", "/agencies/{agency}/uploads/{upload_id}"): lambda c: c.get("/agencies/1/uploads/bad%20id"),
}


ROUTES_WITH_422 = [route for route in AGENCY_ROUTES if route in REQUESTS_422]


def test_done_documents_no_422_and_a_bad_agency_id_is_404(tmp_path):
    doc = document(tmp_path)
    assert "422" not in doc["paths"]["/agencies/{agency}/done"]["post"]["responses"]
    with make_client(tmp_path / "real") as client:
        assert client.post("/agencies/x/done").status_code == 404


@pytest.mark.parametrize("route", ROUTES_WITH_422, ids=lambda r: f"{r[0]} {r[1]}")
def test_each_route_documents_its_own_real_422(tmp_path, route):
    method, path = route
    doc = document(tmp_path)
    example = doc["paths"][path][method]["responses"]["422"]["content"][PROBLEM]["example"]
    assert example == ROUTE_422[route]
    jsonschema.validate(example, doc["components"]["schemas"]["ProblemDetails"])
    with make_client(tmp_path / "real") as client:
        answer = REQUESTS_422[route](client)
    assert answer.status_code == 422
    assert answer.json() == example


def test_the_bets_422_example_lists_the_errors(tmp_path):
    example = document(tmp_path)["paths"][BETS]["post"]["responses"]["422"]["content"][PROBLEM]["example"]
    assert example["errors"] and example["error_count"] == len(example["errors"])
    others = [
        document(tmp_path)["paths"][p][m]["responses"]["422"]["content"][PROBLEM]["example"]
        for m, p in ROUTES_WITH_422[1:]
    ]
    assert len({e["detail"] for e in others} | {example["detail"]}) == len(ROUTES_WITH_422)  # no copies


def test_every_documented_example_fits_its_schema(tmp_path, tokens_file):
    for doc in (document(tmp_path / "open"), document(tmp_path / "tokens", tokens_file=tokens_file)):
        problem_schema = {**doc["components"]["schemas"]["ProblemDetails"], "components": doc["components"]}
        for item in doc["paths"].values():
            for operation in item.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {}).get(PROBLEM)
                    if content is not None:
                        assert content["example"]["status"] == int(status)
                        jsonschema.validate(content["example"], problem_schema)


def test_try_it_out_on_post_rounds_opens_the_servers_default_round_and_warns(tmp_path):
    """Issue 25.5: Swagger fills the body from the document; Execute opens that round for real."""
    doc = document(tmp_path, winning_number=4321, agencies=2)
    body = doc["paths"]["/rounds"]["post"]["requestBody"]
    assert "Try it out opens a real round" in body["description"]
    example = body["content"]["application/json"]["example"]
    assert example == {}
    with make_client(tmp_path / "try", winning_number=4321, agencies=2) as client:
        for agency in (1, 2):
            assert client.post(f"/agencies/{agency}/done").status_code == 200
        opened = client.post("/rounds", json=example).json()
    assert (opened["round"], opened["agencies"], opened["winning_number"], opened["random"]) == (2, 2, 4321, False)
