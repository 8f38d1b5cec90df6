"""A database host that hangs (issue 24): the service leaves it for the next host of its URL.

A frozen host (SIGSTOP, a hung VM) closes nothing and resets nothing, and its kernel still
acknowledges every packet: measured, queries in flight on it blocked forever, held every pooled
connection, and the service never recovered after the failover. Here the first host of a
multi-host URL is a proxy that freezes (tests/support/freezer.py) in front of the test server,
the second host is that server itself: once the first hangs, requests must fail (503) within
their deadline, and then succeed on the second, each chunk stored once.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit, urlunsplit

from app.store import StorageBusy, StorageUnavailable
from app.store.postgres import PostgresStore
from tests import postgres_db
from tests.helpers import WIN, chunk
from tests.support.freezer import FreezingProxy

LOCK_TIMEOUT = 3.0
# A request may wait its lock timeout, then the client-side deadline's margin: not forever.
BOUND = LOCK_TIMEOUT + 15


def _multi_host(url: str, first_port: int) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    hosts = f"127.0.0.1:{first_port},{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=user + hosts, query="target_session_attrs=read-write"))


def _timed(call, results: list, index: int) -> None:
    started = time.monotonic()
    try:
        outcome: object = call()
    except (StorageUnavailable, StorageBusy) as error:
        outcome = error
    results[index] = (time.monotonic() - started, outcome)


def _bounded(calls: list) -> list[tuple[float, object]]:
    """Run the calls at once; each must end (answer or 503) within BOUND seconds."""
    results: list = [None] * len(calls)
    threads = [threading.Thread(target=_timed, args=(c, results, i), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND + 5)
    assert all(r is not None for r in results), f"requests still waiting {BOUND + 5} s after the host froze"
    return results


def test_a_frozen_database_host_is_left_for_the_next_host_in_the_url():
    with postgres_db.fresh_database() as url, FreezingProxy(urlsplit(url).port) as proxy:
        store = PostgresStore(_multi_host(url, proxy.listen_port), 2, WIN, lock_timeout=LOCK_TIMEOUT)
        try:
            store.append_chunk(chunk(1, 10, "a", key="a"))
            assert proxy.connections >= 1  # the first host serves while it is up

            def in_flight_query() -> None:  # a query in flight when the host freezes
                with store._connection() as conn:  # the connection handling is what is tested
                    proxy.freeze()
                    conn.execute("SELECT 1")

            in_flight = _bounded([in_flight_query])
            frozen_at = time.monotonic()
            calls = [lambda i=i: store.append_chunk(chunk(2, 10, f"b{i}", key=f"b{i}")) for i in range(6)]
            first = _bounded(calls)
            # Then, as the uploader does, each chunk again until stored: on the second host.
            while pending := [i for i, (_, outcome) in enumerate(first) if isinstance(outcome, Exception)]:
                assert time.monotonic() - frozen_at < 60, first
                again = _bounded([calls[i] for i in pending])
                for i, result in zip(pending, again, strict=True):
                    first[i] = result
            status = store.status(draw=False)
        finally:
            store.close()
    assert isinstance(in_flight[0][1], Exception), in_flight  # a 503, not an answer from nowhere
    assert in_flight[0][0] < BOUND
    assert all(elapsed < BOUND for elapsed, _ in first), first
    assert status.bets == 10 + 6 * 10  # every chunk once
