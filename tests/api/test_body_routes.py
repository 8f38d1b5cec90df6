"""Every route that takes a body authenticates before a byte of it is read (issue 20).

The issue's reproduction: with tokens on and no token sent, ``POST /rounds`` read a 300 MB
body whole and parsed it before checking the token (4 x 150 MB at once: 2.5 GB of worker
memory kept), while ``/bets`` answered 401 at once. This walks every route of the built app
that accepts a body, sends each an oversized body without a token straight through the ASGI
interface, and counts the bytes the app pulls from the client: 401 or 413, none pulled.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from app.main import create_app
from app.settings import Settings

BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
HUGE = 300 * 2**20
PART = 2**16
PATH_VALUES = {"agency": "1", "round": "1", "upload_id": "u1"}


def every_route(routes: list[Any]) -> list[Any]:
    """The app's routes as served: FastAPI 0.165 keeps an included router's routes behind an
    ``_IncludedRouter`` that builds them (prefix joined) on demand."""
    found = []
    for route in routes:
        if hasattr(route, "effective_candidates"):
            found += every_route(route.effective_candidates())
        else:
            found.append(route)
    return found


def body_routes(app) -> list[tuple[str, str]]:
    found = [
        (method, re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], route.path))
        for route in every_route(app.routes)
        if isinstance(getattr(route, "original_route", route), APIRoute)
        for method in sorted((route.methods or set()) & BODY_METHODS)
    ]
    assert ("POST", "/rounds") in found and ("POST", "/agencies/1/bets") in found  # the walk sees them
    return found


async def send_body(app, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """(status, bytes the app pulled) for a request whose body would be HUGE bytes."""
    pulled = 0
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= HUGE:
            await asyncio.sleep(3600)  # the client has sent it all: wait as a socket would
        pulled += PART
        return {"type": "http.request", "body": b"7" * PART, "more_body": pulled < HUGE}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), timeout=20)
    return status[0], pulled


@pytest.fixture
def app(tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"1": "a" * 20, "2": "b" * 20, "operator": "o" * 20}))
    return create_app(Settings(data_dir=tmp_path / "data", agencies=2, tokens_file=tokens))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_no_token_no_body_read(app, framing: str, content_type: str) -> None:
    length = (
        (b"content-length", str(HUGE).encode()) if framing == "content-length" else (b"transfer-encoding", b"chunked")
    )
    headers = [(b"host", b"127.0.0.1"), (b"content-type", content_type.encode()), length]
    answers = {f"{m} {p}": asyncio.run(send_body(app, m, p, headers)) for m, p in body_routes(app)}
    assert {route: answer for route, answer in answers.items() if answer[0] not in (401, 413) or answer[1]} == {}


def test_an_open_server_bounds_the_operator_body(tmp_path) -> None:
    """Without tokens, ``POST /rounds`` still reads no more than its limit: 413, not 300 MB."""
    app = create_app(Settings(data_dir=tmp_path / "data", agencies=2))
    for length in ((b"content-length", str(HUGE).encode()), (b"transfer-encoding", b"chunked")):
        status, pulled = asyncio.run(
            send_body(app, "POST", "/rounds", [(b"content-type", b"application/json"), length])
        )
        assert status == 413 and pulled <= 2**20, (length, status, pulled)
