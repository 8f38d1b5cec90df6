"""The OpenAPI document of one app instance: what FastAPI generates, made exact for tools and people.

FastAPI's document is close but not exact, and schema-driven tools (schemathesis, client
generators, the docs page's "Try it out") act on every word of it. Built once per app,
from that app's settings:

- bearer auth is declared only when the server has tokens (an open server would otherwise
  "accept invalid authentication" by its own document);
- header parameters are plain strings with their real patterns and lengths (optional
  headers, not ``string | null``), and ``Upload-Offset`` is an integer;
- the bets route's examples do not win with this server's winning number, since "Try it
  out" stores them for real;
- ``POST /rounds``'s example is the empty body (the server's settings), not a made-up round
  that "Try it out" would open for real, and the route says it acts for real;
- each route's 422 example is one this route really gives;
- ``ProblemDetails`` is in the components, where every error response points.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from app.problems import PROBLEM_JSON, ProblemDetails
from app.routes.schemas import EXAMPLE_NUMBERS, example_bets
from app.settings import Settings

# What the server checks (app/deps.py), as JSON Schema; optional headers are simply absent.
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "Upload-Id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"},
    "Upload-Offset": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999},
}

# Each route's own 422, exactly as the server answers the request named in the comment
# (tests/docs/test_openapi.py sends each one and compares).
ROUTE_422: dict[tuple[str, str], dict[str, Any]] = {
    # POST /agencies/3/bets, text/csv, the second line's document "12a"
    ("post", "/agencies/{agency}/bets"): {
        "type": "about:blank",
        "title": "Invalid bets",
        "status": 422,
        "detail": "1 invalid bet field(s) in a chunk of 2",
        "instance": "/agencies/3/bets",
        "errors": [
            {
                "index": 1,
                "field": "document",
                "message": 'must be a string of 1 to 10 digits, e.g. "30904465"',
                "line": 2,
            }
        ],
        "error_count": 1,
    },
    # GET /agencies/1/winners?wait=61
    ("get", "/agencies/{agency}/winners"): {
        "type": "about:blank",
        "title": "Invalid request",
        "status": 422,
        "detail": "query.wait: Input should be less than or equal to 60",
        "instance": "/agencies/1/winners",
        "errors": [{"field": "query.wait", "message": "Input should be less than or equal to 60"}],
    },
    # GET /agencies/1/uploads/bad%20id
    ("get", "/agencies/{agency}/uploads/{upload_id}"): {
        "type": "about:blank",
        "title": "Invalid request",
        "status": 422,
        "detail": "path.upload_id: String should match pattern '^[A-Za-z0-9._:-]{1,128}$'",
        "instance": "/agencies/1/uploads/bad id",
        "errors": [{"field": "path.upload_id", "message": "String should match pattern '^[A-Za-z0-9._:-]{1,128}$'"}],
    },
}


# Routes whose every input is the agency id (404 when it is not one): they never answer 422,
# though FastAPI documents a 422 for any route with a parameter.
NO_422 = {("post", "/agencies/{agency}/done"), ("get", "/agencies/{agency}/uploads")}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve this app's own document at /openapi.json (and on the docs pages)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = customize(generate(), settings, with_tokens=app.state.tokens is not None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def customize(document: dict[str, Any], settings: Settings, *, with_tokens: bool) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["ProblemDetails"] = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    if not with_tokens:
        components.pop("securitySchemes", None)
    numbers = non_winning_numbers(settings.winning_number)
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if not with_tokens:
                operation.pop("security", None)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header":
                    parameter["schema"] = header_schema(parameter)
            if (method, path) in NO_422:
                operation.get("responses", {}).pop("422", None)
            example = ROUTE_422.get((method, path))
            problem = operation.get("responses", {}).get("422", {}).get("content", {}).get(PROBLEM_JSON)
            if example is not None and problem is not None:
                problem["example"] = example
            if path == "/agencies/{agency}/bets" and method == "post":
                set_bet_examples(operation, numbers)
            if path == "/rounds" and method == "post":
                set_open_round_example(operation)
    return doc


def header_schema(parameter: dict[str, Any]) -> dict[str, Any]:
    """The header's checked schema, or FastAPI's without the ``null`` branch (a header is absent or a string)."""
    known = HEADER_SCHEMAS.get(parameter["name"])
    if known is not None:
        return dict(known)
    schema = dict(parameter["schema"])
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    schema.pop("title", None)
    return schema


def non_winning_numbers(winning: int) -> tuple[int, int]:
    """The example numbers, each replaced when it is this server's winning number."""
    return tuple(n if n != winning else (n + 1) % 10_000 for n in EXAMPLE_NUMBERS)  # type: ignore[return-value]


OPEN_ROUND_WARNING = (
    "**Try it out opens a real round** on this server (once the current one is drawn; new bets "
    "then go to it). The example, an empty body `{}`, takes the server's settings: "
    "LOTTERY_AGENCIES agencies and LOTTERY_WINNING_NUMBER; set `agencies` or `winning_number` "
    '(or `"random"`) only to differ from them.'
)


def set_open_round_example(operation: dict[str, Any]) -> None:
    # Without an example Swagger makes one up from the schema (a winning number of 9999).
    body = operation["requestBody"]
    body["description"] = OPEN_ROUND_WARNING
    body["content"]["application/json"]["example"] = {}


def set_bet_examples(operation: dict[str, Any], numbers: tuple[int, int]) -> None:
    as_json, as_csv = example_bets(numbers)
    content = operation["requestBody"]["content"]
    content["application/json"]["example"] = as_json
    content["text/csv"]["example"] = as_csv
    number = content["application/json"]["schema"]["properties"]["bets"]["items"]["properties"]["number"]
    number["examples"] = [numbers[0]]
