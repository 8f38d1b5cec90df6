"""Every error leaves as RFC 9457 problem details (``application/problem+json``).

Domain and storage code raise their own exceptions; this module is the one place that
decides which HTTP status each of them becomes. Nothing a client sends can reach the
generic 500 handler: that would be a bug, and it is logged as one.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import ingest, rounds
from app.store import base as store_errors

log = logging.getLogger("lottery")
PROBLEM_JSON = "application/problem+json"


Range = Annotated[list[int], Field(min_length=2, max_length=2)]  # [start, end): a plain array schema tools accept


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, plus ``errors``/``error_count`` for bad bets and ``committed`` for range conflicts."""

    type: str = Field("about:blank", examples=["about:blank"])
    title: str = Field(examples=["Invalid bets"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["2 invalid bet field(s) in a chunk of 250"])
    instance: str | None = Field(None, examples=["/agencies/1/bets"])
    errors: list[dict[str, Any]] | None = Field(
        None,
        description="Each problem found (at most 100): index and CSV line of the bet, field, message",
        examples=[[{"index": 3, "line": 4, "field": "birthdate", "message": "must be a date as YYYY-MM-DD"}]],
    )
    error_count: int | None = Field(
        None, description="How many problems the chunk has in all (errors lists at most 100)", examples=[2]
    )
    committed: list[Range] | None = Field(
        None,
        description="On 409 'Lines already stored': the upload's stored line ranges [start, end)",
        examples=[[[0, 5000]]],
    )


class Problem(Exception):
    """Raise to answer with a problem; also what every mapped exception turns into."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers, self.extra = status, title, detail, headers, extra


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class UnknownAgency(Exception):
    pass


class NotDrawnYet(Exception):
    def __init__(self, retry_after: int):
        super().__init__("the draw has not happened yet: every agency must say done first")
        self.retry_after = retry_after


class Unauthorized(Exception):
    pass


class Forbidden(Exception):
    pass


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def to_problem(error: Exception) -> Problem:
    """The one table from exceptions to statuses."""
    match error:
        case Problem():
            return error
        case ingest.InvalidChunk():
            return Problem(
                422, "Invalid bets", str(error), errors=[p.as_dict() for p in error.problems], error_count=error.total
            )
        case ingest.MalformedBody():
            return Problem(400, "Malformed body", str(error))
        case ingest.UnsupportedMediaType():
            return Problem(415, "Unsupported media type", str(error))
        case ingest.TooManyBets() | BodyTooLarge():
            return Problem(413, "Chunk too large", str(error))
        case BodyTimeout():
            return Problem(408, "Request timeout", str(error), headers={"Connection": "close"})
        case UnknownAgency():
            return Problem(404, "Unknown agency", str(error))
        case NotDrawnYet():
            return Problem(425, "Too early", str(error), headers={"Retry-After": str(error.retry_after)})
        case Unauthorized():
            return Problem(401, "Unauthorized", str(error), headers={"WWW-Authenticate": 'Bearer realm="lottery"'})
        case Forbidden():
            return Problem(403, "Forbidden", str(error))
        case store_errors.RangeConflict():
            return Problem(409, "Lines already stored", str(error), committed=[list(r) for r in error.committed])
        case rounds.AgencyClosed():
            return Problem(409, "Agency closed", str(error))
        case rounds.RoundNotCurrent():
            return Problem(409, "Not the current round", str(error), current_round=error.current)
        case rounds.RoundStillOpen():
            return Problem(409, "Round still open", str(error), current_round=error.current)
        case rounds.RoundNotFound():
            return Problem(404, "Unknown round", str(error))
        case store_errors.IdempotencyMismatch():
            return Problem(422, "Idempotency key reused", str(error))
        case store_errors.StorageBusy():
            return Problem(503, "Storage busy", str(error), headers={"Retry-After": "1"})
        case store_errors.StorageUnavailable():
            return Problem(503, "Storage unavailable", str(error), headers={"Retry-After": "5"})
    log.exception("action: error_interno | result: fail", exc_info=error)
    return Problem(500, "Internal error", "an unexpected error happened; it has been logged")


def _validation_problem(error: RequestValidationError) -> Problem:
    errors = []
    for e in error.errors():
        item = {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
        if item not in errors:  # a parameter two dependencies read (the agency id) is reported once
            errors.append(item)
    return Problem(422, "Invalid request", "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)


def allowed_methods(request: Request, fallback: str) -> str:
    """Every documented method at this path (Starlette names only the first route's: a path with
    a GET route and a POST route, like /rounds, would say ``Allow: GET``); else ``fallback``."""
    import re

    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {m.upper() for m in operations if m in ("get", "post", "put", "patch", "delete")}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) if methods else fallback


def install(app: FastAPI) -> None:
    async def handle(request: Request, error: Exception) -> JSONResponse:
        return problem_response(request, to_problem(error))

    # Starlette types every handler as taking any Exception; each of these is registered for one class.
    async def handle_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        titles = {404: "Not found", 405: "Method not allowed"}
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request, (headers or {}).get("Allow", ""))}
        return problem_response(
            request,
            Problem(error.status_code, titles.get(error.status_code, "HTTP error"), str(error.detail), headers=headers),
        )

    async def handle_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return problem_response(request, _validation_problem(error))

    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_exception_handler(RequestValidationError, handle_validation)
    for kind in (
        Problem,
        ingest.IngestError,
        store_errors.StoreError,
        rounds.RoundError,
        BodyTooLarge,
        BodyTimeout,
        UnknownAgency,
        NotDrawnYet,
        Unauthorized,
        Forbidden,
        Exception,
    ):
        app.add_exception_handler(kind, handle)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, each with a realistic example.

    The ProblemDetails schema they point to, and each route's own 422 example, are put in
    by app/openapi.py.
    """
    return {
        status: {
            "description": _EXAMPLES[status][0],
            "content": {
                PROBLEM_JSON: {
                    "schema": {"$ref": "#/components/schemas/ProblemDetails"},
                    "example": {
                        "type": "about:blank",
                        "status": status,
                        "title": _EXAMPLES[status][1],
                        "detail": _EXAMPLES[status][2],
                    },
                }
            },
        }
        for status in statuses
    }


_EXAMPLES = {
    408: ("The body did not arrive in time", "Request timeout", "the body did not arrive within 30 seconds"),
    400: ("Body cannot be parsed", "Malformed body", "malformed CSV at line 12: unexpected end of data"),
    401: (
        "Missing or wrong bearer token",
        "Unauthorized",
        "a valid 'Authorization: Bearer <token>' header is required",
    ),
    403: ("Token of another agency", "Forbidden", "this token belongs to another agency"),
    404: ("Agency outside 1..N", "Unknown agency", "agency 9 does not exist: agencies are 1 to 5"),
    409: (
        "Agency done, draw over, or lines already stored",
        "Agency closed",
        "agency 1 already said done; no more bets are taken from it",
    ),
    413: ("Body or chunk over the limit", "Chunk too large", "a chunk may carry at most 100000 bets; split the upload"),
    415: ("Neither JSON nor CSV", "Unsupported media type", "Content-Type 'text/plain' is not supported"),
    422: ("A parameter is invalid", "Invalid request", "path.agency: Input should be a valid integer"),
    425: (
        "The draw has not happened yet (see Retry-After)",
        "Too early",
        "the draw has not happened yet: every agency must say done first",
    ),
    501: (
        "This backend does not keep the transparency log",
        "Not on this backend",
        "the transparency log is not kept on the PostgreSQL backend yet",
    ),
    503: (
        "Storage busy or not writable (see Retry-After)",
        "Storage unavailable",
        "storage error: No space left on device",
    ),
}
