"""Helpers of the fault-injection tests: uploader processes, waits, and checks on bets.csv."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx

from app.domain import WINNING_NUMBER as WINNING
from app.domain import latest_birthdate, parse_number_text, validate_bet
from devtools.server import Server
from tests.helpers import read_agency_file, round_file
from tests.support.uploader import uploader

SORTEO = "action: sorteo | result: success"


class Unexpected5xx:
    """An httpx response hook counting 5xx answers, except those provoked on purpose.

    ``client = httpx.Client(event_hooks={"response": [five]})``; requests made inside
    ``with five.provoked():`` (a full disk must answer 503) are not counted.
    """

    def __init__(self) -> None:
        self.count = 0
        self._provoking = False

    def __call__(self, response: httpx.Response) -> None:
        if response.status_code >= 500 and not self._provoking:
            self.count += 1

    @contextlib.contextmanager
    def provoked(self) -> Iterator[None]:
        self._provoking = True
        try:
            yield
        finally:
            self._provoking = False


def run_uploaders(url: str, files: dict[int, Path], *extra: str) -> dict[int, subprocess.Popen]:
    """One uploader per agency file; each logs every retry with its reason (a DEBUG line:
    ``motivo: HTTP 5..`` counts the 5xx it met), not only when it starts waiting."""
    return {
        a: uploader(
            "run", "--agency", str(a), "--file", str(p), "--server", url, "--json", *extra,
            env={"LOTTERY_LOG_LEVEL": "DEBUG"},
        )
        for a, p in files.items()
    }  # fmt: skip


def finish(procs: dict[int, subprocess.Popen], timeout: float) -> dict[int, tuple[str, str, int]]:
    """Wait for every uploader (one shared deadline); kill the stragglers and fail loudly."""
    deadline = time.monotonic() + timeout
    results = {}
    for agency, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"uploader {agency} still running after {timeout}s:\n{err[-3000:]}") from None
        results[agency] = (out, err, proc.returncode)
    return results


def wait_workers_loaded(server: Server, timeout: float = 30) -> None:
    """Until every worker has loaded the app (and so opened the store and repaired the files).

    ``Server.start`` returns once one worker answers /health and every worker has *begun*
    booting; a worker still importing the app has not yet run the store's recovery.
    """
    deadline = time.monotonic() + timeout
    while server.log().count("Application startup complete.") < server.workers:
        if server.proc is None or server.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{server.log()[-4000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not loaded after {timeout}s:\n{server.log()[-4000:]}")
        time.sleep(0.05)


def expected_winners(files: dict[int, Path]) -> dict[int, Counter]:
    """Per agency, the documents of its bets with the winning number (a multiset)."""
    return {a: Counter(bet[2] for bet in read_agency_file(p) if bet[4] == WINNING) for a, p in files.items()}


def winners_of(rows: Counter) -> dict[int, Counter]:
    """The same, from a multiset of rows such as tests.helpers.expected_rows gives."""
    out: dict[int, Counter] = {}
    for (agency, _, _, document, _, number), times in rows.items():
        if number == WINNING:
            out.setdefault(agency, Counter())[document] += times
    return out


def winners_in_file_order(data_dir: Path) -> dict[int, list[str]]:
    """What the draw must answer: per agency, winning documents in bets.csv order."""
    out: dict[int, list[str]] = {}
    with open(round_file(data_dir, "bets.csv"), newline="", encoding="utf-8") as f:
        for agency, _, _, document, _, number in csv.reader(f):
            if int(number) == WINNING:
                out.setdefault(int(agency), []).append(document)
    return out


def check_bets_file(path: Path, validate: bool = False) -> int:
    """bets.csv parses end to end: complete 6-field rows, one per line. Returns the row count.

    No field may hold a newline, so the file must hold exactly as many records as lines and
    end with a newline (no torn last line). ``validate`` also re-checks every row with
    app.domain's rules, as the server stored it.
    """
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"bets.csv ends with a torn line: {data[-80:]!r}"
    latest = latest_birthdate()
    rows = 0
    for rows, fields in enumerate(csv.reader(io.StringIO(data.decode("utf-8"), newline="")), 1):
        assert len(fields) == 6, f"bets.csv record {rows}: {len(fields)} fields: {fields!r}"
        if validate:
            agency, first, last, document, birthdate, value = fields
            row = validate_bet(int(agency), first, last, document, birthdate, parse_number_text(value), latest)
            assert row == (int(agency), first, last, document, birthdate, int(value)), f"record {rows}: {fields!r}"
    assert rows == data.count(b"\n"), "a record of bets.csv spans several lines"
    return rows


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "(absent)"


def ledger_end(data_dir: Path) -> int:
    """``end`` of the last committed ledger line: the committed size of bets.csv."""
    data = (round_file(data_dir, "ledger.jsonl")).read_bytes()
    lines = data[: data.rfind(b"\n") + 1].splitlines()  # a torn last line commits nothing
    return json.loads(lines[-1])["end"] if lines else 0
