"""The worker's head and body deadlines (app/worker.py) are armed only for what is still to come.

A one-bet POST's head and body arrive in one read: neither deadline is needed, and the request's
scope says its body is all there, so the app reads it without one either (issue 22). What
arrives in pieces still gets each deadline, from when the parser has taken what came.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from app.limits import BODY_RECEIVED
from app.settings import get_settings
from app.worker import HeadDeadlineProtocol

from .test_corked import Transport

HEAD = b"POST /agencies/1/bets HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n"
BET = b"Ana,Lopez,20000001,1999-03-17,7574\n"


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never reached: no test runs the loop
    raise AssertionError("not served in these tests")


@pytest.fixture
def protocol() -> Any:
    loop = asyncio.new_event_loop()
    config = Config(app=_app, http=HeadDeadlineProtocol, lifespan="off")
    config.load()
    http = HeadDeadlineProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    http.connection_made(Transport())  # type: ignore[arg-type]
    http.timers_made = []  # every deadline armed after the accept's
    made = loop.call_at

    def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        handle = made(when, callback, *args, **kwargs)
        http.timers_made.append(handle)
        return handle

    loop.call_at = call_at  # type: ignore[method-assign]  # call_later goes through it too
    yield http
    for task in asyncio.all_tasks(loop):  # the request cycles the head started, never run
        task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def _body_received(http: HeadDeadlineProtocol) -> bool:
    return BODY_RECEIVED in http.scope.get("extensions", {})


def test_a_head_and_body_in_one_read_arm_no_deadline_and_mark_the_body_received(protocol: Any) -> None:
    protocol.data_received(HEAD % len(BET) + BET)
    assert (protocol.timers_made, protocol._head_timer, protocol._body_timer) == ([], None, None)
    assert _body_received(protocol)


def test_a_body_still_to_come_gets_its_deadline_until_it_has_arrived(protocol: Any) -> None:
    settings = get_settings()
    protocol.data_received(HEAD % len(BET))
    timer = protocol._body_timer
    assert timer is not None and not _body_received(protocol)
    assert timer.when() - protocol.loop.time() == pytest.approx(settings.body_timeout + 1.0, abs=0.5)
    protocol.data_received(BET[:10])
    assert protocol._body_timer is timer  # armed once, from when the head closed
    protocol.data_received(BET[10:])
    assert (protocol._body_timer, timer.cancelled(), _body_received(protocol)) == (None, True, True)
    assert protocol.timers_made == [timer]


def test_a_head_in_pieces_gets_a_head_deadline_from_its_first_bytes(protocol: Any) -> None:
    settings = get_settings()
    protocol.data_received(HEAD % len(BET) + BET)  # the first request: the accept's deadline is gone
    protocol.cycle.response_complete = True  # as if answered: the connection waits for a new head
    protocol.data_received(b"POST /agen")
    timer = protocol._head_timer
    assert timer is not None
    assert timer.when() - protocol.loop.time() == pytest.approx(settings.header_timeout, abs=0.5)
    protocol.data_received((HEAD % len(BET))[10:] + BET)
    assert (protocol._head_timer, timer.cancelled(), protocol._body_timer) == (None, True, None)
    assert protocol.timers_made == [timer]


def test_a_get_has_no_body_deadline(protocol: Any) -> None:
    protocol.data_received(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (protocol.timers_made, protocol._head_timer, protocol._body_timer) == ([], None, None)
