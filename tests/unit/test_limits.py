"""The per-worker body budget (app/limits.py) and a client leaving mid-body, in process."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app import limits
from app.limits import BodyBudget, BudgetExhausted
from app.main import create_app
from app.settings import Settings


def test_a_body_waits_for_room_and_gets_it_when_one_is_released() -> None:
    async def scenario() -> list[str]:
        budget = BodyBudget(100, wait=30)
        events: list[str] = []
        first = budget.reserve(80)
        await first.__aenter__()

        async def second() -> None:
            async with budget.reserve(50):
                events.append(f"second admitted with {budget.used} in use")

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0)  # the second body is now waiting for room
        events.append(f"first releases with {budget.used} in use")
        await first.__aexit__(None, None, None)
        await waiting
        events.append(f"at rest {budget.used}")
        return events

    assert asyncio.run(scenario()) == [
        "first releases with 80 in use",
        "second admitted with 50 in use",
        "at rest 0",
    ]


def test_a_body_that_never_fits_gets_503_with_retry_after_and_holds_nothing() -> None:
    async def scenario() -> tuple[BudgetExhausted, int]:
        budget = BodyBudget(100, retry_after=3, wait=0.01)
        async with budget.reserve(80):
            with pytest.raises(BudgetExhausted) as refused:
                async with budget.reserve(30):
                    pass
            return refused.value, budget.used

    refused, used = asyncio.run(scenario())
    assert (refused.status, refused.headers, used) == (503, {"Retry-After": "3"}, 80)


def test_a_chunked_body_grows_its_reservation_until_it_does_not_fit() -> None:
    async def scenario() -> tuple[int, int]:
        budget = BodyBudget(100, wait=0.01)
        async with budget.reserve(0) as held:
            held.grow(60)
            held.grow(40)
            with pytest.raises(BudgetExhausted):
                held.grow(1)
            inside = budget.used
        return inside, budget.used

    assert asyncio.run(scenario()) == (100, 0)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_client_that_leaves_mid_body_is_one_info_line_and_a_count(tmp_path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", agencies=2))
    body = b"Ana,Gomez,30904465,1999-03-17,7574\n" * 10
    messages = [
        {"type": "http.request", "body": body[:100], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/agencies/1/bets",
        "raw_path": b"/agencies/1/bets",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"text/csv"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    before = limits.disconnects
    records, logger = _Records(), logging.getLogger("lottery")  # the app's logger does not propagate
    logger.addHandler(records)
    try:
        asyncio.run(app(scope, receive, send))
    finally:
        logger.removeHandler(records)
    assert limits.disconnects == before + 1
    lines = [r for r in records.records if r.levelno >= logging.INFO]
    assert [(r.levelname, r.getMessage()) for r in lines] == [
        ("INFO", "action: cliente_desconectado | result: fail | agencia: 1 | durante: body")
    ]
    assert app.state.store.status().bets == 0
    assert app.state.body_budget.used == 0


@pytest.mark.parametrize("received", [False, True])
def test_a_body_the_server_says_has_arrived_is_read_without_a_deadline(monkeypatch, received: bool) -> None:
    """The worker marks a request whose whole body has arrived (app/worker.py, BODY_RECEIVED):
    reading it cannot wait, so no deadline is set for it; any other body is read under one."""
    from starlette.requests import Request

    from app import deps

    deadlines: list[float] = []
    real_timeout = asyncio.timeout

    def timeout(delay: float) -> asyncio.Timeout:
        deadlines.append(delay)
        return real_timeout(delay)

    monkeypatch.setattr(deps.asyncio, "timeout", timeout)
    parts = [{"type": "http.request", "body": b"Ana,", "more_body": True}, {"type": "http.request", "body": b"Lopez"}]

    async def receive() -> dict:
        return parts.pop(0)

    scope = {"type": "http", "headers": [], "extensions": {limits.BODY_RECEIVED: {}} if received else {}}

    async def read() -> tuple[bytearray, int]:
        budget = BodyBudget(100)
        async with budget.reserve(9) as held:
            body = await deps.read_body(Request(scope, receive), 100, 7.0, 9, held)
        return body, budget.used

    assert asyncio.run(read()) == (bytearray(b"Ana,Lopez"), 0)
    assert deadlines == ([] if received else [7.0])
