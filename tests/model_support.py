"""Support of the model-based upload test (tests/integration/test_upload_model.py).

Three jobs, kept apart from the state machine itself:

- :class:`AgencyFile`: an agency file as the model sees it, line by line, each line with its
  kind (a bet, an invalid bet, a header, a blank line) and, for bets, an identity that an edit
  keeps (a bet fixed in place is the same bet), rendered to bytes with a BOM, CRLF or LF.
- :func:`run_uploader`: one real ``python -m client run`` process, interrupted (optionally)
  right after an *observed* event: the uploader logged its upload id and the server reports
  at least ``k`` more bets stored for it.
- :func:`snapshot`: a consistent view of what the server stores: the committed ranges of
  every known upload, and the committed rows of bets.csv, read between two equal answers of
  the server so that no chunk commits in between.

The numbering is the upload contract's: an upload numbers the file's bet lines from 0;
headers, blank lines and the BOM never get a number.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from devtools.server import ROOT
from tests.helpers import round_file
from tests.support.uploader import uploader_env

HEADER = "first_name,last_name,document,birthdate,number"
BOM = b"\xef\xbb\xbf"
WINNING = 7574
BET, INVALID, HEADER_LINE, BLANK = "bet", "invalid", "header", "blank"

# A stored bet as bets.csv holds it, without the agency: (first, last, document, birthdate, number).
Content = tuple[str, str, str, str, int]


@dataclass(frozen=True)
class Line:
    kind: str  # BET, INVALID, HEADER_LINE or BLANK
    text: str  # without its line terminator
    ident: int = -1  # bets and invalid bets: kept by edits, so a stored bet can be followed

    @property
    def numbered(self) -> bool:
        """A bet line (valid or not): it gets an index in the upload; other lines never do."""
        return self.kind in (BET, INVALID)

    def content(self) -> Content:
        first, last, document, birthdate, number = next(csv.reader([self.text]))
        return (first.strip(), last.strip(), document, birthdate, int(number))

    def __repr__(self) -> str:
        return repr(self.text) if self.kind != INVALID else f"invalid({self.text!r})"


@dataclass
class AgencyFile:
    lines: list[Line]
    bom: bool = False
    crlf: bool = False
    final_newline: bool = True

    def render(self) -> bytes:
        eol = "\r\n" if self.crlf else "\n"
        text = eol.join(line.text for line in self.lines) + (eol if self.final_newline and self.lines else "")
        return (BOM if self.bom else b"") + text.encode("utf-8")

    def bets(self) -> list[Line]:
        """The numbered lines, in upload order: index ``i`` of an upload is ``bets()[i]``."""
        return [line for line in self.lines if line.numbered]

    def copy(self) -> AgencyFile:
        return replace(self, lines=list(self.lines))

    def __repr__(self) -> str:
        flags = [name for name, on in (("bom", self.bom), ("crlf", self.crlf)) if on]
        if not self.final_newline:
            flags.append("no final newline")
        body = "\n    ".join(repr(line) for line in self.lines)
        return f"AgencyFile({', '.join(flags) or 'lf'}):\n    {body}"


@dataclass(frozen=True)
class Version:
    """The bet lines of one state of the file, frozen when a run starts."""

    number: int
    bets: tuple[Line, ...]

    def at(self, index: int) -> tuple[int, Content | str]:
        """(identity, content) of bet ``index``; a placeholder when the file has no such bet."""
        if index >= len(self.bets):
            return (-1 - index, f"<no bet {index} in version {self.number}: the file has {len(self.bets)}>")
        line = self.bets[index]
        if line.kind == INVALID:
            return (line.ident, f"<invalid bet {index} of version {self.number}: {line.text!r}>")
        return (line.ident, line.content())


@dataclass
class RunResult:
    code: int
    stdout: str
    stderr: str
    upload_ids: list[str]  # every upload id the uploader named, in order
    advised_id: str | None  # the id it told the user to rerun with, if any
    completed: bool  # the upload finished and the agency said done
    interrupted: str | None  # what was done to it, e.g. "uploader SIGKILL after 3 bets"
    error: str | None  # its one-line error message, when it failed

    def tail(self, chars: int = 3000) -> str:
        return self.stderr[-chars:]


_UPLOAD_ID = re.compile(r"upload_id: ([A-Za-z0-9._:-]+)")
_ADVISED = re.compile(r"--upload-id (sha256-[0-9a-f]+)")  # the ids the uploader makes, not a placeholder "ID"
_ERROR = re.compile(r"result: fail \| error: (.+)")


def parse_run(code: int, stdout: str, stderr: str, interrupted: str | None) -> RunResult:
    ids = list(dict.fromkeys(_UPLOAD_ID.findall(stderr) + _ADVISED.findall(stderr)))
    advised = _ADVISED.findall(stderr)
    errors = _ERROR.findall(stderr)
    return RunResult(
        code=code,
        stdout=stdout,
        stderr=stderr,
        upload_ids=ids,
        advised_id=advised[-1] if advised else None,
        completed="action: fin_carga | result: success" in stderr,
        interrupted=interrupted,
        error=errors[-1].strip() if errors else None,
    )


@dataclass
class Interrupt:
    """Stop a run once the server reports ``after_bets`` more bets stored for its upload."""

    target: str  # "uploader" or "server"
    sig: int
    after_bets: int

    def __repr__(self) -> str:
        return f"Interrupt({self.target}, {signal.Signals(self.sig).name}, after_bets={self.after_bets})"


def run_uploader(
    url: str,
    agency: int,
    path: Path,
    log_path: Path,
    *,
    batch_size: int,
    concurrency: int,
    upload_id: str | None = None,
    draw_timeout: float = 0.01,
    interrupt: Interrupt | None = None,
    restart_server: Callable[[int], None] | None = None,
    limit: float = 180,
) -> RunResult:
    """One real uploader process, run to its end or interrupted after an observed event.

    A short ``draw_timeout``: once the upload is done the uploader asks for the winners once
    and, if the round is not drawn yet, exits 1 ("the draw did not happen"); the model tells
    that apart from a failed upload by the ``fin_carga`` success line.
    """
    args = [sys.executable, "-m", "client", "run", "--agency", str(agency), "--file", str(path)]
    args += ["--server", url, "--batch-size", str(batch_size), "--concurrency", str(concurrency)]
    args += ["--timeout", str(draw_timeout), "--json", "--retries", "12"]
    if upload_id:
        args += ["--upload-id", upload_id]
    with open(log_path, "w+", encoding="utf-8") as err:
        proc = subprocess.Popen(args, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=err, env=uploader_env())
        done = None
        try:
            if interrupt is not None:
                done = _interrupt_when_observed(proc, url, agency, log_path, interrupt, restart_server, limit)
            try:
                out, _ = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=10)
                raise AssertionError(
                    f"uploader still running after {limit}s:\n{log_path.read_text()[-3000:]}"
                ) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        err.seek(0)
        return parse_run(proc.returncode, out, err.read(), done)


def _interrupt_when_observed(
    proc: subprocess.Popen,
    url: str,
    agency: int,
    log_path: Path,
    interrupt: Interrupt,
    restart_server: Callable[[int], None] | None,
    limit: float,
) -> str | None:
    """Wait for the uploader's upload id, then for ``after_bets`` more bets stored; then strike.

    Returns what was done, or None when the uploader ended first (nothing to interrupt).
    """
    deadline = time.monotonic() + limit
    upload_id, base = None, 0
    with httpx.Client(base_url=url, timeout=5) as http:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"uploader still running after {limit}s:\n{log_path.read_text()[-3000:]}")
            if upload_id is None:
                found = _UPLOAD_ID.search(log_path.read_text(encoding="utf-8", errors="replace"))
                if found:
                    upload_id = found.group(1)
                    base = _stored_bets(http, agency, upload_id)
                    if base is None:
                        upload_id = None
                        continue
            if upload_id is not None:
                stored = _stored_bets(http, agency, upload_id)
                if stored is not None and stored - base >= interrupt.after_bets:
                    if proc.poll() is not None:
                        return None
                    what = f"{interrupt!r} (seen {stored - base} more bets stored)"
                    if interrupt.target == "uploader":
                        proc.send_signal(interrupt.sig)
                    else:
                        assert restart_server is not None
                        restart_server(interrupt.sig)
                    return what
            time.sleep(0.002)
    return None


def _stored_bets(http: httpx.Client, agency: int, upload_id: str) -> int | None:
    try:
        response = http.get(f"/agencies/{agency}/uploads/{upload_id}")
    except httpx.HTTPError:
        return None
    return response.json()["bets"] if response.status_code == 200 else None


# -- What the server stores ------------------------------------------------------------------


@dataclass
class Snapshot:
    committed: dict[tuple[int, str], list[tuple[int, int]]]  # (agency, upload id) -> ranges
    rows: dict[int, Counter] = field(default_factory=dict)  # agency -> multiset of Content


def upload_ids_listed(http: httpx.Client, agency: int) -> list[str]:
    """The agency's uploads from ``GET /agencies/{a}/uploads`` where the server has that route."""
    try:
        response = http.get(f"/agencies/{agency}/uploads")
    except httpx.HTTPError:
        return []
    if response.status_code != 200:
        return []
    return [u["upload_id"] for u in response.json().get("uploads", [])]


def committed_ranges(http: httpx.Client, uploads: set[tuple[int, str]]) -> dict[tuple[int, str], list]:
    out = {}
    for agency, upload_id in sorted(uploads):
        response = http.get(f"/agencies/{agency}/uploads/{upload_id}")
        assert response.status_code == 200, f"GET uploads/{upload_id}: {response.status_code} {response.text}"
        out[(agency, upload_id)] = [tuple(r) for r in response.json()["committed"]]
    return out


def committed_rows(data_dir: Path) -> dict[int, Counter]:
    """bets.csv up to the last committed ledger record, per agency (a multiset of Content)."""
    bets, ledger = round_file(data_dir, "bets.csv"), round_file(data_dir, "ledger.jsonl")
    if not bets.exists():
        return {}
    data = bets.read_bytes()
    if ledger.exists():
        text = ledger.read_bytes()
        lines = text[: text.rfind(b"\n") + 1].splitlines()
        data = data[: json.loads(lines[-1])["end"]] if lines else b""
    out: dict[int, Counter] = {}
    for agency, first, last, document, birthdate, number in csv.reader(data.decode("utf-8").splitlines()):
        out.setdefault(int(agency), Counter())[(first, last, document, birthdate, int(number))] += 1
    return out


def snapshot(url: str, data_dir: Path, uploads: set[tuple[int, str]], agencies: list[int]) -> Snapshot:
    """Committed ranges and bets.csv as of one moment: the ranges read before and after the rows agree.

    A chunk sent by a killed uploader can still commit just after it died; reading twice
    around the rows makes sure none did in between (no sleep: it retries until two agree).
    """
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(50):
            known = set(uploads)
            for agency in agencies:
                known |= {(agency, u) for u in upload_ids_listed(http, agency)}
            before = committed_ranges(http, known)
            rows = committed_rows(data_dir)
            after = committed_ranges(http, known)
            if before == after:
                return Snapshot(after, rows)
    raise AssertionError("the stored ranges kept changing while no uploader was running")


def indexes(ranges: list[tuple[int, int]]) -> set[int]:
    return {i for start, end in ranges for i in range(start, end)}


def winners_in_file_order(data_dir: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for agency, rows in committed_rows_in_order(data_dir):
        if rows[4] == WINNING:
            out.setdefault(agency, []).append(rows[2])
    return out


def committed_rows_in_order(data_dir: Path) -> list[tuple[int, Content]]:
    with open(round_file(data_dir, "bets.csv"), newline="", encoding="utf-8") as f:
        return [(int(a), (b, c, d, e, int(n))) for a, b, c, d, e, n in csv.reader(f)]


def server_errors(log: str) -> int:
    """500s the server answered (the generic handler logs each one)."""
    return log.count("action: error_interno")


def signal_name(sig: int) -> str:
    return signal.Signals(sig).name
