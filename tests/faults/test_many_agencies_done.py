"""Thousands of agencies say done while workers are SIGKILLed, then the server dies between the
last done and the draw (issue 21): every done counted once, one draw, every agency's winners right.

A worker's dones are written in groups (one done.log append for many), so a kill lands in the
middle of a group: the group's agencies got no answer and retry; none may count twice or be
lost. The killer follows the done count (/status), not the clock. Then the whole server is
SIGKILLed with every agency but one done, and the crash the store can leave at its draw is
made by hand, as in test_server_kills: the last agency's line in done.log, no winners.json.
After a restart every agency asks its winners at once: the first query draws, once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from bench.agency_scale import run_phase
from devtools.server import Server
from tests.faults.support import SORTEO, wait_workers_loaded, winners_in_file_order
from tests.faults.test_worker_kills import Killer
from tests.figures import lost_and_duplicated, record
from tests.helpers import WIN, round_file, stored_rows

pytestmark = [pytest.mark.faults, pytest.mark.long]

AGENCIES, BETS = 3_000, 4
KILLS = 8  # one each time the done count passes another 1/9 of the agencies
CLIENTS = 24
FIGURE = "SIGKILL a random worker at each 1/9 of 3,000 agencies' dones; the server at the draw (crafted); restart"


def bets_of(agency: int) -> list[tuple[str, str, str, str, int]]:
    # One bet in four of the agencies divisible by 7 wins: the winners are spread over hundreds.
    return [("Ana", "Paz", f"{agency}{i}", "1990-01-01", WIN if agency % 7 == 0 and i == 1 else i) for i in range(BETS)]


def upload_all(server: Server) -> None:
    head = f"Host: 127.0.0.1:{server.port}\r\nConnection: keep-alive\r\nContent-Type: text/csv\r\n"
    requests = []
    for agency in range(1, AGENCIES + 1):
        body = "".join(f"{f},{l},{d},{b},{n}\n" for f, l, d, b, n in bets_of(agency)).encode()
        requests.append(
            f"POST /agencies/{agency}/bets HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
    asyncio.run(run_phase("127.0.0.1", server.port, requests, 32))


def say_done(url: str, agencies: list[int], answers: dict[int, dict], retries: Counter) -> None:
    """Each agency's done until a 200 (a done is idempotent: a retry after a kill is safe)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for agency in agencies:
            while True:
                try:
                    r = client.post(f"/agencies/{agency}/done")
                    if r.status_code == 200:
                        answers[agency] = r.json()
                        break
                    retries[r.status_code] += 1
                except httpx.TransportError:  # the worker died mid-request: no answer, ask again
                    retries["transport"] += 1
                time.sleep(0.01)


class DoneKiller(Killer):
    """A random worker SIGKILLed each time the done count passes the next mark."""

    def run(self) -> None:
        try:
            for mark in range(1, KILLS + 1):
                target = (AGENCIES - 1) * mark // (KILLS + 1)
                while httpx.get(self.server.url + "/status", timeout=30).json()["done_count"] < target:
                    time.sleep(0.005)
                self.kill_one()
        except BaseException as error:  # noqa: BLE001 - the test reports it
            self.error = error


def test_kills_among_thousands_of_dones_then_at_the_draw_count_each_once_and_draw_once(tmp_path: Path) -> None:
    record(FIGURE)  # the row shows, with the outcome, even if the test fails before measuring
    data = tmp_path / "data"
    first = Server(data, workers=3, agencies=AGENCIES, log_path=tmp_path / "first.log").start()
    answers: dict[int, dict] = {}
    retries: Counter = Counter()
    try:
        wait_workers_loaded(first)
        upload_all(first)
        killer = DoneKiller(first, random.Random(21))
        killer.start()
        saying = list(range(1, AGENCIES))  # the last agency's done is the crash's, below
        random.Random(7).shuffle(saying)
        clients = [
            threading.Thread(target=say_done, args=(first.url, saying[i::CLIENTS], answers, retries))
            for i in range(CLIENTS)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join(180)
        killer.join(60)
        deadline = time.monotonic() + 30
        while first.log().count("was sent SIGKILL") < len(killer.kills) and time.monotonic() < deadline:
            time.sleep(0.05)  # gunicorn logs each kill as it reaps the worker
        first_log = first.log()
    finally:
        first.stop(signal.SIGKILL)
    assert killer.error is None, repr(killer.error)
    assert len(killer.kills) == KILLS and first_log.count("was sent SIGKILL") == KILLS
    assert retries["transport"] > 0, "no done was cut by a kill: the test proved nothing"
    assert sorted(answers) == list(range(1, AGENCIES))
    # Each done counted once: the done.log lines (torn ones cut at the next read) name each agency once.
    lines = round_file(data, "done.log").read_bytes().split(b"\n")
    complete = [int(line) for line in lines[:-1]]
    assert Counter(complete) == Counter(range(1, AGENCIES)), "a done lost or written twice"
    assert not any(a["drawn"] for a in answers.values())

    # The crash at the draw: every done on disk, the last one too, and no winners.json.
    with open(round_file(data, "done.log"), "r+b") as f:
        f.truncate(sum(len(line) + 1 for line in lines[:-1]))  # a torn line the kill may have left
        f.seek(0, 2)
        f.write(b"%d\n" % AGENCIES)
    assert not round_file(data, "winners.json").exists()

    second = Server(data, workers=3, agencies=AGENCIES, log_path=tmp_path / "second.log").start()
    try:
        wait_workers_loaded(second)
        head = f"Host: 127.0.0.1:{second.port}\r\nConnection: keep-alive\r\n\r\n"
        asks = [f"GET /agencies/{a}/winners HTTP/1.1\r\n{head}".encode() for a in range(1, AGENCIES + 1)]
        bodies: list[bytes] = [b""] * AGENCIES
        asyncio.run(run_phase("127.0.0.1", second.port, asks, 64, bodies))
        status = httpx.get(second.url + "/status", timeout=30).json()
        second_log = second.log()
    finally:
        second.stop()

    sent = Counter((a, *bet) for a in range(1, AGENCIES + 1) for bet in bets_of(a))
    stored = stored_rows(data)
    lost, duplicated = lost_and_duplicated(sent, stored)
    errors_5xx = sum(n for code, n in retries.items() if isinstance(code, int) and code >= 500)
    record(
        FIGURE, faults=len(killer.kills) + 1, crafted_states=1, errors_5xx=errors_5xx, lost=lost, duplicated=duplicated
    )
    assert second_log.count(SORTEO) == 1, f"drew {second_log.count(SORTEO)} times"
    assert first_log.count(SORTEO) == 0
    assert status == {"expected": AGENCIES, "done_count": AGENCIES, "drawn": True, "bets": AGENCIES * BETS}
    expected = {a: [d for _, _, d, _, n in bets_of(a) if n == WIN] for a in range(1, AGENCIES + 1)}
    assert [orjson.loads(b) for b in bodies] == [{"agency": a, "winners": expected[a]} for a in range(1, AGENCIES + 1)]
    assert winners_in_file_order(data) == {a: docs for a, docs in expected.items() if docs}
    assert stored == sent
    assert errors_5xx == 0, retries
