"""Resuming an upload never stores a bet twice or skips one (issue 9, items 1 and 2; CONTRACT-uploads).

Real gunicorn, real uploader processes. An uploader is interrupted on an observed event: a
TCP proxy between it and the server forwards a given number of chunk requests and holds the
next one, so the test knows exactly what was acknowledged when it kills the process.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import httpx
import pytest

from devtools.server import Server
from tests.helpers import stored_rows
from tests.support.proxy import HoldingProxy
from tests.support.uploader import run_uploader, uploader

HEADER = "first_name,last_name,document,birthdate,number"


def content_upload_id(path: Path) -> str:
    """The upload id the uploader gives a file: its content hash."""
    return "sha256-" + hashlib.sha256(path.read_bytes()).hexdigest()[:40]


def bet_line(i: int, birthdate: str = "1990-01-01") -> str:
    return f"Ana {i},Gómez,{30_000_000 + i},{birthdate},{(i * 37) % 10_000}"


def stored_bets(data_dir: Path) -> Counter:
    return Counter(row[1:] for row in stored_rows(data_dir).elements())


def as_stored(lines: list[str]) -> Counter:
    out = Counter()
    for line in lines:
        first, last, document, birthdate, number = line.split(",")
        out[(first, last, document, birthdate, int(number))] += 1
    return out


def run(path: Path, url: str, *args: str):
    return run_uploader("run", "--agency", "1", "--file", str(path), "--server", url, *args, timeout=60)


# -- item 1: lines that are not bets never shift a resumed upload ------------------------------

BETS = [bet_line(i) for i in range(20)]
FILES = {
    # The reproduction: the header the README says is accepted.
    "header at the start": (HEADER + "\n" + "\n".join(BETS) + "\n").encode(),
    # Every kind of line that is not a bet, as files made by spreadsheets and `cat` have them.
    "every kind of skipped line": (
        b"\xef\xbb\xbf"
        + (
            HEADER.upper().replace(",", " , ")
            + "\r\n\r\n"
            + "\r\n".join(BETS[:3])
            + "\n\n   \n\t\r\n"
            + "\r\n".join(BETS[3:8])
            + "\r\n"
            + HEADER
            + "\r\n\r\n"
            + "\n".join(BETS[8:])
        ).encode()
    ),
}


@pytest.mark.parametrize("kind", FILES)
def test_a_resumed_upload_stores_each_bet_once_whatever_lines_the_file_skips(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "agency-1.csv"
    path.write_bytes(FILES[kind])
    upload = content_upload_id(path)
    with Server(tmp_path / "data", workers=2, agencies=1) as server, HoldingProxy(server.port, allow=2) as proxy:
        first = uploader(
            *("run", "--agency", "1", "--file", str(path), "--server", proxy.url),
            *("--batch-size", "5", "--concurrency", "1"),
        )
        while not proxy.held.wait(0.05):  # the third chunk reached the proxy, or the uploader ended
            assert first.poll() is None, first.communicate(timeout=10)
        # Two chunks acknowledged, the third held: the first ten bets, counted as bets.
        progress = httpx.get(f"{server.url}/agencies/1/uploads/{upload}").json()
        assert (progress["committed"], progress["bets"]) == ([[0, 10]], 10)
        first.kill()
        first.communicate(timeout=10)

        code, _, err = run(path, server.url, "--batch-size", "5")
        assert code == 0, err
        assert "ya_almacenadas: 10" in err
        assert stored_bets(server.data_dir) == as_stored(BETS)  # 20 bets, each once
        assert httpx.get(f"{server.url}/agencies/1/uploads/{upload}").json()["committed"] == [[0, 20]]


# -- item 2: a file changed between runs ----------------------------------------------------------


def _first_run_with_a_bad_line(
    tmp_path: Path, server: Server, bad: int = 2, concurrency: int = 4
) -> tuple[Path, list[str], list[list[int]], str]:
    """The issue's case: a 30th of February on line 3, --batch-size 5 --concurrency 4: rejected.

    With ``concurrency`` 4 the other chunks may or may not be stored (they race the rejection);
    a test that needs stored chunks to resume puts the bad line later and sends one at a time."""
    lines = [bet_line(i) for i in range(20)]
    lines[bad] = bet_line(bad, "1990-02-30")
    path = tmp_path / "agency-1.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    upload = content_upload_id(path)
    code, _, err = run(path, server.url, "--batch-size", "5", "--concurrency", str(concurrency))
    assert code == 1
    assert f"{path}:{bad + 1}: birthdate is not a valid calendar date" in err
    assert "Fix the bad line in place (keep the same lines in the same order" in err
    assert f"rerun with --upload-id {upload}" in err
    committed = httpx.get(f"{server.url}/agencies/1/uploads/{upload}").json()["committed"]
    chunk = bad // 5 * 5
    assert all(end <= chunk or start >= chunk + 5 for start, end in committed)  # the bad chunk stored nothing
    if concurrency == 1:
        assert committed == ([[0, chunk]] if chunk else [])  # the chunks before it, and nothing after
    return path, lines, committed, upload


def test_deleting_the_rejected_line_and_resuming_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        path, lines, committed, upload = _first_run_with_a_bad_line(tmp_path, server)
        before = stored_bets(server.data_dir)
        path.write_text("\n".join(lines[:2] + lines[3:]) + "\n", encoding="utf-8")  # the advice not followed

        code, _, err = run(path, server.url, "--batch-size", "5", "--upload-id", upload)

        if not committed:  # the other chunks gave up before being sent: nothing to shift, a clean upload
            assert code == 0, err
            assert stored_bets(server.data_dir) == as_stored(lines[:2] + lines[3:])
            return
        assert code == 1  # every stored range moved by one line: resuming would store one bet twice
        start, end = committed[0]
        assert f"upload {upload}: bets {start}-" in err and "do not match what the server stored" in err
        assert "the file changed since those bets were stored: put those lines back as they were" in err
        assert stored_bets(server.data_dir) == before  # nothing sent


def test_fixing_the_rejected_line_in_place_resumes_cleanly(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        path, lines, committed, upload = _first_run_with_a_bad_line(tmp_path, server)
        lines[2] = bet_line(2)  # fixed in place, as the advice says
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

        code, _, err = run(path, server.url, "--batch-size", "5", "--concurrency", "4", "--upload-id", upload)

        assert code == 0, err
        assert f"ya_almacenadas: {sum(e - s for s, e in committed)}" in err
        assert stored_bets(server.data_dir) == as_stored(lines)  # every bet once


def test_fixing_in_place_and_rerunning_without_the_upload_id_resumes_the_old_upload(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        # Something must be stored to resume: the bad line in the third chunk, one chunk at a time
        # (with 4 at once, a loaded machine let the rejection stop the others before they were sent).
        path, lines, committed, upload = _first_run_with_a_bad_line(tmp_path, server, bad=12, concurrency=1)
        lines[12] = bet_line(12)
        lines.append(bet_line(20))  # and one more bet appended
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

        code, _, err = run(path, server.url, "--batch-size", "5")

        assert code == 0, err
        assert f"result: resuming | agencia: 1 | upload_id: {upload}" in err
        assert stored_bets(server.data_dir) == as_stored(lines)


def test_another_file_is_refused_unless_the_user_says_so(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        path, lines, committed, upload = _first_run_with_a_bad_line(tmp_path, server)
        before = stored_bets(server.data_dir)
        other = tmp_path / "other.csv"
        others = [bet_line(i) for i in range(100, 107)]
        other.write_text("\n".join(others) + "\n", encoding="utf-8")

        code, _, err = run(other, server.url)
        assert code == 1
        stored = sum(e - s for s, e in committed)
        assert f"agency 1 has other uploads this round: {upload} ({stored} bets)" in err
        assert "--upload-id ID" in err and "--another-file" in err
        assert stored_bets(server.data_dir) == before

        code, _, err = run(other, server.url, "--another-file")
        assert code == 0, err
        assert stored_bets(server.data_dir) == before + as_stored(others)
