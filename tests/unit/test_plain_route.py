"""PlainRoute (app/routes/plain.py): the endpoint gets exactly what FastAPI's solving would have
given it, and a route it cannot serve that way is refused when the app is built."""

from __future__ import annotations

import inspect
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.security import HTTPBearer
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from app.routes.agencies import post_bets
from app.routes.plain import PlainRoute
from app.routes.scope import at_round

SEEN: list[dict] = []


async def endpoint(request: Request, **params) -> Response:
    """Takes exactly POST /bets's parameters (its signature, below) and records what it got."""
    credentials = params["credentials"]
    SEEN.append(
        {
            **params,
            "credentials": None if credentials is None else (credentials.scheme, credentials.credentials),
            "request": type(request).__name__,
        }
    )
    return Response(b"{}", 201, media_type="application/json")


# The real route's parameters as served, so a parameter added to it is in this test at once.
endpoint.__signature__ = inspect.signature(at_round(post_bets, named=False))  # type: ignore[attr-defined]


def _app() -> FastAPI:
    app = FastAPI()
    plain = APIRouter(prefix="/plain/{agency}")
    plain.add_api_route("/bets", endpoint, methods=["POST"], route_class_override=PlainRoute)
    solved = APIRouter(prefix="/solved/{agency}")
    solved.add_api_route("/bets", endpoint, methods=["POST"])
    app.include_router(plain)
    app.include_router(solved)
    return app


CLIENT = TestClient(_app())
# Header values as bytes (latin-1 on the wire), absent (None), or sent twice.
VALUE = st.one_of(
    st.none(), st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b and b"\0" not in b)
)
AUTH = st.one_of(
    st.none(),
    st.sampled_from([b"Bearer abc", b"bearer abc", b"Basic abc", b"Bearer", b"Bearer  two words", b"", b"Bearer \xe9"]),
    VALUE,
)


@settings(max_examples=300, deadline=None)
@given(
    agency=st.text(alphabet="0123456789x%-", min_size=1, max_size=6),
    headers=st.fixed_dictionaries(
        {"Idempotency-Key": VALUE, "Upload-Id": VALUE, "Upload-Offset": VALUE, "Authorization": AUTH}
    ),
    twice=st.sampled_from([None, "Idempotency-Key", "upload-id", "Authorization"]),
)
def test_the_endpoint_gets_what_fastapi_would_give_it(agency: str, headers: dict, twice: str | None) -> None:
    raw = [(name.encode(), value.strip(b" \t")) for name, value in headers.items() if value is not None]
    if twice is not None:
        raw.append((twice.encode(), b"second"))
    answers = []
    for prefix in ("plain", "solved"):
        SEEN.clear()
        response = CLIENT.post(f"/{prefix}/{agency}/bets", headers=raw, content=b"")
        answers.append((response.status_code, list(SEEN)))
    assert answers[0] == answers[1]
    assert answers[0][0] in (201, 404)  # 404: a path that is not the route's (e.g. an escaped slash)


def _refused(route_endpoint, **route) -> str:
    router = APIRouter()
    with pytest.raises(TypeError) as caught:
        router.add_api_route("/x/{agency}", route_endpoint, methods=["POST"], route_class_override=PlainRoute, **route)
    return str(caught.value)


async def takes_a_number(request: Request, agency: Annotated[int, Path()]) -> Response:
    return Response()


async def takes_a_query(request: Request, agency: str, page: Annotated[str | None, Query()] = None) -> Response:
    return Response()


async def takes_a_checked_header(
    request: Request, agency: str, key: Annotated[str | None, Header(max_length=3)] = None
) -> Response:
    return Response()


async def _dependency() -> int:
    return 1


async def takes_a_dependency(request: Request, agency: str, value: Annotated[int, Depends(_dependency)]) -> Response:
    return Response()


async def takes_no_request(agency: str) -> Response:
    return Response()


def plain_def(request: Request, agency: str) -> Response:
    return Response()


async def takes_the_response(request: Request, agency: str, response: Response) -> Response:
    return response


@pytest.mark.parametrize(
    ("route_endpoint", "reason"),
    [
        (takes_a_number, "parameter 'agency' is not plain text"),
        (takes_a_query, "query parameters"),
        (takes_a_checked_header, "parameter 'key' is not plain text"),
        (takes_a_dependency, "dependency"),
        (takes_no_request, "must be `async def` and take the Request"),
        (plain_def, "must be `async def` and take the Request"),
        (takes_the_response, "a response parameter"),
    ],
)
def test_a_route_that_is_not_plain_is_refused_when_built(route_endpoint, reason: str) -> None:
    assert reason in _refused(route_endpoint)


def test_included_under_a_dependency_it_is_refused() -> None:
    # The including router's dependency would otherwise be skipped on every request.
    router = APIRouter()
    router.add_api_route("/x/{agency}", endpoint, methods=["POST"], route_class_override=PlainRoute)
    app = FastAPI()
    app.include_router(router, dependencies=[Depends(_dependency)])  # FastAPI builds the route later:
    with pytest.raises(TypeError, match="not a plain route"):
        app.openapi()  # for its document,
    with pytest.raises(TypeError, match="not a plain route"):
        TestClient(app).post("/x/1")  # or at its first request: never served without the dependency


def test_a_bearer_that_is_no_parameter_is_refused_when_built() -> None:
    # A route-level bearer has no parameter to pass its value to: the handler would call the
    # endpoint with the keyword None, a TypeError (500) on every request.
    reason = _refused(endpoint, dependencies=[Depends(HTTPBearer(auto_error=False))])
    assert "dependency <fastapi.security.http.HTTPBearer object" in reason


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.text(alphabet=st.sampled_from("Bearer bearer BASIC x  \t.=é"), max_size=20),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20),
    )
)
def test_the_plain_routes_bearer_reading_is_fastapis(authorization: str | None) -> None:
    """bearer_credentials reads the header as HTTPBearer(auto_error=False) does, whatever it holds."""
    import asyncio

    from starlette.requests import Request as StarletteRequest

    from app.routes.plain import bearer_credentials

    raw = [] if authorization is None else [(b"authorization", authorization.encode("latin-1"))]
    solved = asyncio.run(HTTPBearer(auto_error=False)(StarletteRequest({"type": "http", "headers": raw})))
    assert bearer_credentials(authorization) == solved
