"""A corrupt data dir never stops the server (issue 9, item 5), against real gunicorn.

What a power cut can leave on a filesystem without ordered writes: a complete ledger line of
NUL bytes, then a valid record. The old release failed to boot every worker on it (the master
then exited), and a running server answered 500. Now every worker boots, every request answers
503 naming the file and the byte offset of the bad line, and once the operator repairs the file
the server serves again, without a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from devtools.server import Server
from tests.helpers import round_file

CSV = {"Content-Type": "text/csv"}


class BootedServer(Server):
    """A server that counts as started once every worker has booted, whatever /health says."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            if self._booted() >= self.workers:
                return
            time.sleep(0.05)
        raise TimeoutError(f"workers not booted after {timeout}s:\n{self.log()}")


def bets(n: int, first: int = 0) -> bytes:
    return "".join(f"Ana {i},Gómez,{10000000 + i},1990-01-01,{i}\n" for i in range(first, first + n)).encode()


def assert_refused(response: httpx.Response, where: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert where in response.json()["detail"], response.json()


@pytest.mark.parametrize("when", ["at boot", "while running"])
def test_a_nul_line_in_the_ledger_answers_503_with_its_offset_and_the_server_keeps_running(tmp_path: Path, when):
    data = tmp_path / "data"
    with Server(data, workers=2, agencies=2) as first:
        headers = {**CSV, "Upload-Id": "file-1", "Upload-Offset": "0"}
        assert httpx.post(f"{first.url}/agencies/1/bets", content=bets(3), headers=headers).status_code == 201
    ledger = (round_file(data, "ledger.jsonl")).read_bytes()
    bets_csv = (round_file(data, "bets.csv")).read_bytes()
    power_cut = b"\0" * 41 + b"\n" + orjson.dumps({"a": 1, "n": 1, "h": "0" * 64, "end": len(bets_csv)}) + b"\n"
    where = f"{round_file(data, 'ledger.jsonl')}: the line at byte {len(ledger)} is not a valid ledger record"

    server = BootedServer(data, workers=2, agencies=2)
    try:
        if when == "at boot":
            (round_file(data, "ledger.jsonl")).write_bytes(ledger + power_cut)
            server.start()
        else:
            server.start()
            assert httpx.get(f"{server.url}/health").status_code == 200
            with open(round_file(data, "ledger.jsonl"), "ab") as f:
                f.write(power_cut)
        url = server.url
        for _ in range(3 * server.workers):  # several requests each: every worker answers alike
            assert_refused(httpx.get(f"{url}/health"), where)
            assert_refused(httpx.get(f"{url}/status"), where)
            assert_refused(httpx.post(f"{url}/agencies/2/bets", content=bets(2), headers=CSV), where)
            assert_refused(httpx.post(f"{url}/agencies/1/done"), where)
            winners = httpx.get(f"{url}/agencies/1/winners")
            if when == "at boot" or winners.status_code != 425:
                # Long polls read winners.json and done.json without the lock, and do not re-read
                # the ledger on every poll: a worker that has not seen the bad line yet says 425.
                assert_refused(winners, where)
            assert_refused(httpx.get(f"{url}/agencies/1/uploads"), where)
            assert_refused(httpx.get(f"{url}/agencies/1/uploads/file-1"), where)
        assert server.proc is not None and server.proc.poll() is None, "the gunicorn master exited"
        assert (round_file(data, "bets.csv")).read_bytes() == bets_csv  # nothing guessed, nothing cut

        (round_file(data, "ledger.jsonl")).write_bytes(ledger)  # the operator repairs the file
        for _ in range(3 * server.workers):
            assert httpx.get(f"{url}/health").status_code == 200
            assert httpx.get(f"{url}/status").json() == {"expected": 2, "done_count": 0, "drawn": False, "bets": 3}
        assert httpx.post(f"{url}/agencies/2/bets", content=bets(2), headers=CSV).status_code == 201
        log = server.log()
    finally:
        server.stop()
    assert "Traceback" not in log and "error_interno" not in log, log
