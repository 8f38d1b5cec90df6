"""The uploader's retry policy (issue 24): a time budget, not a count, so that it rides through a
database failover (~50 s of 503s); exponential backoff with jitter, at least what ``Retry-After``
asks; one line saying it waits for the server; no retry wasted on a connection the server closes.

The fake servers answer in-process (httpx.MockTransport) on a fake clock: the waits are recorded,
not slept. The keep-alive case runs a real socket server on 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket
import threading

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import client.http
from client.http import Api, ClientError, Rejected
from tests.support.listener import listen


class FakeClock:
    """The Api's clock and its stop event in one: ``wait`` records the delay and moves time on."""

    def __init__(self) -> None:
        self.now, self.waits = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def is_set(self) -> bool:
        return False

    def set(self) -> None:  # the Api's stop event may be set by the uploader: never here
        raise AssertionError("not expected")

    def wait(self, delay: float) -> bool:
        self.waits.append(delay)
        self.now += delay
        return False


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(client.http, "monotonic", fake)
    return fake


def fake_api(clock: FakeClock, answers, **kwargs) -> tuple[Api, list[float]]:
    """An Api whose server answers with ``answers(n)`` to its n-th request (0-based); the times
    (on the fake clock) of every request are returned with it."""
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(clock.now)
        answer = answers(len(seen) - 1)
        if isinstance(answer, Exception):
            raise answer
        return answer

    api = Api("http://lottery.test", transport=httpx.MockTransport(handler), **kwargs)
    api.stop = clock  # type: ignore[assignment]  # waits on the fake clock
    return api, seen


def unavailable(retry_after: str | None = "1") -> httpx.Response:
    return httpx.Response(503, headers={"retry-after": retry_after} if retry_after else {})


def test_a_transient_outage_shorter_than_the_budget_is_ridden_through(clock, caplog) -> None:
    # A failover: 503 with Retry-After for about 51 s (the measured promotion time), then 201.
    api, seen = fake_api(clock, lambda n: unavailable() if clock.now < 1051 else httpx.Response(201), retry_budget=180)
    with caplog.at_level(logging.INFO, logger="client"):
        assert api.request("POST", "/agencies/1/bets").status_code == 201
    assert seen[-1] >= 1051
    assert len(seen) > 11  # more than the old fixed count of attempts
    waiting = [r.getMessage() for r in caplog.records if "waiting for the server" in r.getMessage()]
    assert len(waiting) == 1, caplog.text  # said once, not once per retry
    assert "HTTP 503" in waiting[0] and "180 s" in waiting[0]
    back = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    assert len(back) == 1, caplog.text
    paused = float(back[0].rsplit("after ", 1)[1].removesuffix(" s"))
    assert paused == pytest.approx(seen[-1] - seen[0], abs=0.05)
    assert 51 <= paused <= 51 + client.http.MAX_DELAY  # back within one wait of the server
    assert all(r.levelno < logging.WARNING for r in caplog.records if "intento:" in r.getMessage())


@settings(max_examples=30, deadline=None)
@given(budget=st.floats(5, 600), retry_after=st.sampled_from([None, "0", "1", "3", "30"]))
def test_the_budget_is_time_and_the_last_attempt_is_made_at_its_end(budget, retry_after) -> None:
    clock = FakeClock()
    original = client.http.monotonic
    client.http.monotonic = clock
    try:
        api, seen = fake_api(clock, lambda n: unavailable(retry_after), retry_budget=budget)
        with pytest.raises(ClientError) as error:
            api.request("POST", "/agencies/1/bets")
    finally:
        client.http.monotonic = original
    started = seen[0]
    assert seen[-1] == pytest.approx(started + budget, abs=0.01)  # gives up only once the budget is spent
    assert all(b > a for a, b in zip(seen, seen[1:], strict=False))
    assert str(error.value) == (
        f"giving up on POST /agencies/1/bets after {len(seen)} attempts in {budget:.0f} s: HTTP 503"
    )


def test_waits_grow_exponentially_with_jitter_up_to_a_cap(clock) -> None:
    api, _ = fake_api(clock, lambda n: unavailable(None), retry_budget=300)
    with pytest.raises(ClientError):
        api.request("GET", "/status")
    waits = clock.waits[:-1]  # the last one is cut to the budget's end
    for n, wait in enumerate(waits[:6]):
        ceiling = min(client.http.MAX_DELAY, client.http.BASE_DELAY * 2**n)
        assert ceiling / 2 <= wait <= ceiling, (n, wait)
    assert max(waits) <= client.http.MAX_DELAY
    assert len(set(waits[8:])) > 1  # jittered: the uploaders of many agencies do not retry in step
    # Never the server's keep-alive (gunicorn.conf.py: 5 s), nor near it.
    assert client.http.MAX_DELAY < 4.5


def test_retry_after_is_honoured_as_the_least_wait(clock) -> None:
    answers = [unavailable("7"), httpx.Response(429, headers={"retry-after": "3"}), httpx.Response(200)]
    api, seen = fake_api(clock, lambda n: answers[n], retry_budget=180)
    assert api.request("GET", "/status").status_code == 200
    assert seen[1] - seen[0] >= 7 and seen[2] - seen[1] >= 3


@pytest.mark.parametrize(
    "transient",
    [
        httpx.Response(502),
        httpx.Response(504),
        httpx.Response(408),
        httpx.Response(429),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=lambda t: getattr(t, "status_code", None) or type(t).__name__,
)
def test_transient_answers_are_retried(clock, transient) -> None:
    api, seen = fake_api(clock, lambda n: transient if n < 3 else httpx.Response(200), retry_budget=180)
    assert api.request("GET", "/status").status_code == 200
    assert len(seen) == 4


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_a_final_answer_is_not_retried(clock, status) -> None:
    api, seen = fake_api(clock, lambda n: httpx.Response(status), retry_budget=180)
    with pytest.raises(Rejected):
        api.request("GET", "/status")
    assert len(seen) == 1


def test_retries_still_caps_the_count_when_given(clock) -> None:
    api, seen = fake_api(clock, lambda n: unavailable("0"), retry_budget=180, retries=2)
    with pytest.raises(ClientError, match=r"after 3 attempts in \d+ s: HTTP 503$"):
        api.request("GET", "/status")
    assert len(seen) == 3


def test_the_default_budget_covers_a_failover_with_the_monitors_default_timeouts() -> None:
    from client.options import Options

    assert Options().retry_budget >= 180  # promotion measured ~51 s after the primary is lost
    assert Options().retries is None  # no count: the budget decides


class KeepAliveServer:
    """HTTP/1.1 on 127.0.0.1 that answers 503 with ``Retry-After: KEEPALIVE`` and then closes a
    connection idle for ``KEEPALIVE`` seconds the way a server does at that instant: a request
    arriving on it then is reset, unanswered (gunicorn's keep-alive closing while the request
    is on its way)."""

    KEEPALIVE = 2

    def __init__(self, failures: int) -> None:
        self.failures, self.requests, self.connections, self.resets = failures, 0, 0, 0
        self._listener = listen(self._admit)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _admit(self, conn: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        import time

        idle_since = None
        with conn:
            while True:
                try:
                    head = conn.recv(65536)
                except OSError:
                    return
                if not head:
                    return
                if idle_since is not None and time.monotonic() - idle_since >= self.KEEPALIVE - 0.5:
                    self.resets += 1  # the keep-alive ran out as this request came: reset
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                self.requests += 1
                if self.requests <= self.failures:
                    answer = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\n" % self.KEEPALIVE
                else:
                    answer = b"HTTP/1.1 200 OK\r\n"
                conn.sendall(answer + b"Content-Length: 0\r\n\r\n")
                idle_since = time.monotonic()

    def close(self) -> None:
        self._listener.close()


def test_a_retry_after_the_keep_alive_goes_on_a_fresh_connection() -> None:
    # Measured in issue 24: a 5 s retry wait equal to gunicorn's 5 s keep-alive sometimes met a
    # reset on the reused connection, and spent an attempt. A connection idle for most of the
    # server's keep-alive is not reused: every retry after a wait goes on a new one.
    server = KeepAliveServer(failures=2)
    api = Api(server.url, retry_budget=60)
    try:
        assert api.request("GET", "/status").status_code == 200
    finally:
        api.close()
        server.close()
    assert (server.requests, server.resets) == (3, 0)
    assert server.connections == 3
