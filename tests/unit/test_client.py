"""The uploader's pieces without a server: options, file scanning, chunk planning, progress."""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.config import DEFAULT_BATCH_SIZE, ConfigError, Options, resolve
from client.http import ClientError
from client.lines import line_kind
from client.progress import Progress
from client.resume import check_ranges
from client.upload import plan, scan
from tests.support.listener import listen

# -- options -----------------------------------------------------------------------------


def test_command_line_beats_environment_beats_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "server:\n  address: 'server:12345'\nagency: 3\nfile: a.csv\n"
        "batch:\n  maxAmount: 100\n  concurrency: 2\nlog:\n  level: debug\n"
    )
    from_file = resolve({"config": str(config)}, environ={})
    assert (
        from_file.server,
        from_file.agency,
        from_file.file,
        from_file.batch_size,
        from_file.concurrency,
        from_file.log_level,
    ) == ("http://server:12345", 3, "a.csv", 100, 2, "DEBUG")

    env = {"LOTTERY_CONFIG": str(config), "LOTTERY_BATCH_SIZE": "250", "LOTTERY_AGENCY": "4"}
    from_env = resolve({}, environ=env)
    assert (from_env.batch_size, from_env.agency, from_env.concurrency) == (250, 4, 2)

    from_cli = resolve({"batch_size": 7, "agency": None}, environ=env)
    assert (from_cli.batch_size, from_cli.agency) == (7, 4)


def test_defaults_and_the_course_variables() -> None:
    options = resolve({}, environ={"CLI_ID": "2"})
    assert (options.server, options.agency, options.batch_size) == ("http://127.0.0.1:8000", 2, DEFAULT_BATCH_SIZE)


def test_switches_from_the_environment() -> None:
    assert resolve({}, environ={"LOTTERY_QUIET": "true", "LOTTERY_JSON": "1"}).quiet is True
    assert resolve({}, environ={"LOTTERY_JSON": "1"}).json is True
    assert resolve({}, environ={"LOTTERY_QUIET": "no"}).quiet is False
    with pytest.raises(ConfigError, match="invalid value for quiet: 'maybe'"):
        resolve({}, environ={"LOTTERY_QUIET": "maybe"})


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("s3cret-token-of-agency\n")
    assert resolve({"token_file": str(tmp_path / "t")}, environ={}).token == "s3cret-token-of-agency"


@pytest.mark.parametrize(
    "cli, message",
    [
        ({"batch_size": 0}, "invalid value for batch-size: 0"),
        ({"agency": -1}, "invalid value for agency: -1"),
        ({"timeout": "soon"}, "invalid value for timeout: 'soon'"),
        ({"token_file": "/nonexistent/token"}, "cannot read token file /nonexistent/token"),
        ({"config": "/nonexistent/config.yaml"}, "cannot read config file /nonexistent/config.yaml"),
        ({"upload_id": "sha256-x\r\nX-Evil: 1"}, "invalid value for upload-id: "),
        ({"upload_id": "x" * 129}, "invalid value for upload-id: "),
        ({"token": "abc\r\nX-Evil: 1"}, "invalid value for token: it must be printable ASCII without spaces"),
    ],
)
def test_bad_options_are_one_line_errors(cli: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve(cli, environ={})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


# -- scanning ------------------------------------------------------------------------------


def test_scan_counts_bets_skips_blank_lines_and_names_a_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_bytes(b'\r\nAna,Gomez,1,1990-01-01,5\r\n\n"Perez, Luis",B,2,1990-01-01,6\r\nC,D,3,1990-01-01,7')
    scanned = scan(good)
    assert scanned.bets == 3
    assert scanned.upload_id.startswith("sha256-") and len(scanned.upload_id) == 47
    assert scan(good) == scanned  # the same content, the same upload id

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"Ana,Gomez,1,1990-01-01,5\nLuis,Perez,1990-01-01,6\nC,D,3,1990-01-01,7,8\n")
    with pytest.raises(ClientError, match=r"bad.csv:2: malformed CSV: 4 fields, expected 5"):
        scan(bad)

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("Ana,Gomez,1,1990-01-01,5\nJos\u00e9,P,2,1990-01-01,6\n".encode("latin-1"))
    with pytest.raises(ClientError, match=r"latin1.csv:2: malformed CSV: not valid UTF-8"):
        scan(latin1)

    with pytest.raises(ClientError, match="bets file not found"):
        scan(tmp_path / "missing.csv")


# -- planning ------------------------------------------------------------------------------


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "agency.csv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@settings(max_examples=150, deadline=None)
@given(
    bets=st.integers(1, 60),
    blanks=st.sets(st.integers(0, 70), max_size=8),
    batch=st.integers(1, 13),
    stored=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), max_size=4),
)
def test_plan_sends_every_unstored_bet_once_in_order_within_the_batch_size(
    tmp_path_factory, bets: int, blanks: set[int], batch: int, stored: list[tuple[int, int]]
) -> None:
    lines, numbers, bet_lines = [], {}, []
    for position in range(bets + len(blanks)):
        if position in blanks:
            lines.append("\r\n")
            continue
        index = len(bet_lines)
        bet_lines.append(f"N{index},L,{index},1990-01-01,{index % 10}\n")
        lines.append(bet_lines[-1][:-1] + "\r\n")
        numbers[index] = position + 1
        if len(bet_lines) == bets:
            break
    path = _write(tmp_path_factory.mktemp("plan"), lines)
    committed = [(start, min(start + length, len(bet_lines))) for start, length in stored if start < len(bet_lines)]
    skipped = {i for start, end in committed for i in range(start, end)}

    pieces = list(plan(path, batch, committed))

    sent = [i for piece in pieces for i in range(piece.start, piece.end)]
    assert sent == [i for i in range(len(bet_lines)) if i not in skipped]
    for piece in pieces:
        assert 1 <= piece.end - piece.start <= batch
        assert not skipped & set(range(piece.start, piece.end))  # never crosses a stored range
        assert piece.body == "".join(bet_lines[piece.start : piece.end]).encode()  # LF-normalized
        assert list(piece.numbers) == [numbers[i] for i in range(piece.start, piece.end)]  # the file's line numbers


def test_plan_reads_the_file_a_block_at_a_time(tmp_path: Path, monkeypatch) -> None:
    import client.lines

    monkeypatch.setattr(client.lines, "READ_BLOCK", 64)  # lines straddle every block boundary
    lines = [f"Nombre {i},Apellido,{i},1990-01-01,{i}\n" for i in range(200)]
    path = _write(tmp_path, lines)
    pieces = list(plan(path, 30, [(40, 90)]))
    assert b"".join(p.body for p in pieces) == "".join(lines[:40] + lines[90:]).encode()
    assert scan(path).bets == 200


# -- lines that are not bets (CONTRACT-uploads "Ranges count bets, never other lines") ----------

_NAME_CHARS = "abcXYZ \u00e1\u00f1_-'"
_names = st.text(alphabet=_NAME_CHARS, min_size=1, max_size=6).filter(lambda n: n.strip())
_bet_lines = st.builds(
    lambda first, last, quoted, doc, day, number: (
        (f'"{first}, {last}"' if quoted else first) + f",{last},{doc},1990-01-{day:02d},{number}"
    ),
    _names,
    _names,
    st.booleans(),
    st.integers(1, 99_999_999),
    st.integers(1, 28),
    st.integers(0, 9999),
)
_headers = st.builds(
    lambda fields, spaces, upper: ",".join((" " * spaces + (f.upper() if upper else f) + " " * spaces) for f in fields),
    st.just(["first_name", "last_name", "document", "birthdate", "number"]),
    st.integers(0, 2),
    st.booleans(),
)
_blanks = st.sampled_from(["", " ", "\t", "  \t ", "\u00a0", "\r"])
_items = st.one_of(
    _bet_lines.map(lambda line: ("bet", line)),
    _headers.map(lambda line: ("header", line)),
    _blanks.map(lambda line: ("blank", line)),
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.tuples(_items, st.sampled_from(["\n", "\r\n"])), min_size=1, max_size=40),
    bom=st.booleans(),
    final_newline=st.booleans(),
    block=st.sampled_from([16, 100, 1 << 20]),
    batch=st.integers(1, 7),
    stored=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6)), max_size=3),
)
def test_only_bet_lines_are_numbered_and_sent_whatever_else_the_file_holds(
    tmp_path_factory, items, bom: bool, final_newline: bool, block: int, batch: int, stored
) -> None:
    """Headers anywhere, blank and whitespace-only lines, CRLF, a BOM: never sent, never counted."""
    import client.lines

    text = "".join(line + ending for (_, line), ending in items)
    if not final_newline:
        text = text.removesuffix(items[-1][1])
    path = tmp_path_factory.mktemp("kinds") / "agency.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    bets = [(line, number) for number, ((kind, line), _) in enumerate(items, 1) if kind == "bet"]
    committed = sorted({(s, min(s + n, len(bets))) for s, n in stored if s < len(bets)})
    merged: list[tuple[int, int]] = []
    for s, e in committed:  # disjoint ranges, as a server stores them
        if not merged or s >= merged[-1][1]:
            merged.append((s, e))

    saved, client.lines.READ_BLOCK = client.lines.READ_BLOCK, block
    try:
        scanned = scan(path)
        assert scanned.bets == len(bets)
        pieces = list(plan(path, batch, merged))
        checks, count = check_ranges(path, merged)
        from_memory = list(plan(path, batch, merged, scanned.blocks))  # the blocks scan kept, sent as read
        assert [(p.start, p.end, p.body, list(p.numbers)) for p in from_memory] == [
            (p.start, p.end, p.body, list(p.numbers)) for p in pieces
        ]
        assert check_ranges(path, merged, scanned.blocks) == (checks, count)
    finally:
        client.lines.READ_BLOCK = saved

    skipped = {i for s, e in merged for i in range(s, e)}
    assert [i for p in pieces for i in range(p.start, p.end)] == [i for i in range(len(bets)) if i not in skipped]
    for piece in pieces:
        expected = "".join(line + "\n" for line, _ in bets[piece.start : piece.end]).encode()
        assert piece.body == expected  # bet lines only, each ended by LF, nothing else
        assert list(piece.numbers) == [number for _, number in bets[piece.start : piece.end]]
        assert all(line_kind(line) == "bet" for line in piece.body.split(b"\n")[:-1])
    assert count == len(bets)
    for (s, e), check in zip(merged, checks, strict=True):  # the digest the server computes for that range
        body = "".join(line + "\n" for line, _ in bets[s:e]).encode()
        assert check.digest == hashlib.sha256(body).hexdigest()
        assert (check.first_line, check.last_line) == (bets[s][1], bets[e - 1][1])


def test_a_digest_does_not_depend_on_line_endings(tmp_path: Path) -> None:
    lf, crlf = tmp_path / "lf.csv", tmp_path / "crlf.csv"
    lines = [f"Ana,Gomez,{i},1990-01-01,{i}" for i in range(10)]
    lf.write_bytes("".join(line + "\n" for line in lines).encode())
    crlf.write_bytes(("first_name,last_name,document,birthdate,number\r\n\r\n" + "\r\n".join(lines)).encode())
    (from_lf,), _ = check_ranges(lf, [(2, 7)])
    (from_crlf,), bets = check_ranges(crlf, [(2, 7)])
    assert from_lf.digest == from_crlf.digest and bets == 10
    assert (from_lf.first_line, from_crlf.first_line) == (3, 5)  # each file's own line numbers
    assert check_ranges(crlf, [(2, 7), (9, 11)])[0][1].digest is None  # past the end of the file


# -- progress ------------------------------------------------------------------------------


def test_progress_logs_course_lines_when_not_a_terminal(monkeypatch, caplog) -> None:
    import client.progress

    clock = iter([0.0, 0.0, 1.0, 6.0, 7.0])
    monkeypatch.setattr(client.progress.time, "monotonic", lambda: next(clock))
    progress = Progress(agency=3, tty=False)
    with caplog.at_level(logging.INFO, logger="client"):
        progress.start(total=1000, already=100)
        progress.advance(200)  # 1 s in: too soon for a line
        progress.advance(300)  # 6 s in: a line
    assert [r.getMessage() for r in caplog.records] == [
        "action: progreso | result: in_progress | agencia: 3 | enviadas: 600 | total: 1000 | bets_s: 83"
    ]


def test_progress_draws_a_bar_on_a_terminal(capsys) -> None:
    progress = Progress(agency=1, tty=True)
    progress.start(total=10_000, already=0)
    progress.advance(2_500)
    progress.close()
    err = capsys.readouterr().err
    assert "agency 1" in err and "2.50k/10.0k" in err and "25%" in err


# -- verification before sending (CONTRACT-uploads steps 2 and 3), against a fake server -----------


class FakeServer:
    """Contract-shaped answers for the routes the uploader reads; records every request."""

    def __init__(self, uploads: dict[str, list[dict]], *, lists_uploads: bool = True):
        self.uploads = uploads
        self.lists_uploads = lists_uploads
        self.requests: list[tuple[str, str]] = []

    def handler(self, request):
        self.requests.append((request.method, request.url.path))
        parts = request.url.path.strip("/").split("/")
        if request.method == "GET" and parts[-1] == "uploads":
            if not self.lists_uploads:
                return httpx.Response(404, json={"title": "Not Found"})
            listed = [
                {"upload_id": u, "bets": sum(s["end"] - s["start"] for s in spans), "chunks": len(spans)}
                for u, spans in self.uploads.items()
            ]
            return httpx.Response(200, json={"uploads": listed})
        if request.method == "GET" and parts[-2] == "uploads":
            spans = self.uploads.get(parts[-1], [])
            committed = [[s["start"], s["end"]] for s in spans]
            return httpx.Response(
                200,
                json={
                    "upload_id": parts[-1],
                    "committed": committed,
                    "bets": sum(e - s for s, e in committed),
                    "spans": spans,
                },
            )
        return httpx.Response(201, json={"stored": len(request.content.splitlines())})

    def api(self):
        from client.http import Api

        return Api("http://lottery.test", retries=0, transport=httpx.MockTransport(self.handler))

    def posts(self) -> int:
        return sum(1 for method, _ in self.requests if method == "POST")


def _agency_file(tmp_path: Path, bets: int, name: str = "agency.csv", header: bool = True) -> tuple[Path, list[str]]:
    lines = [f"Ana {i},{name.split('.')[0]},{i},1990-01-01,{i}" for i in range(bets)]
    path = tmp_path / name
    path.write_text((HEADER + "\r\n" if header else "") + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path, lines


HEADER = "first_name,last_name,document,birthdate,number"


def _span(lines: list[str], start: int, end: int, digest: bool = True) -> dict:
    body = "".join(line + "\n" for line in lines[start:end]).encode()
    return {"start": start, "end": end, "digest": hashlib.sha256(body).hexdigest() if digest else None}


def _uploader(fake: FakeServer, path: Path, **kwargs):
    from client.upload import Uploader

    return Uploader(fake.api(), 1, path, batch_size=4, concurrency=2, **kwargs)


def test_stored_spans_that_match_the_file_resume_it(tmp_path: Path) -> None:
    path, lines = _agency_file(tmp_path, 20)
    own = scan(path).upload_id
    fake = FakeServer({own: [_span(lines, 0, 4), _span(lines, 8, 12)]})
    assert _uploader(fake, path).run() == 20
    assert fake.posts() == 3  # [4, 8), [12, 16), [16, 20)


def test_a_span_that_no_longer_matches_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    path, lines = _agency_file(tmp_path, 20)
    old = list(lines)
    del lines[5]  # a line deleted: every later bet moves
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fake = FakeServer({"sha256-old": [_span(old, 0, 4), _span(old, 4, 8), _span(old, 12, 16)]})
    with pytest.raises(ClientError) as error:
        _uploader(fake, path, upload_id="sha256-old").run()
    message = str(error.value)
    assert message.startswith(f"upload sha256-old: bets 4-7 (numbered from 0), lines 5-8 of {path}, do not match")
    assert "put those lines back as they were" in message
    assert "correcting a rejected line in place, keeping the same lines in the same order, resumes cleanly" in message
    assert fake.posts() == 0


def test_a_span_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    path, lines = _agency_file(tmp_path, 20)
    longer = lines + ["Zoe,Z,99,1990-01-01,1"] * 4
    fake = FakeServer({"sha256-old": [_span(longer, 0, 4), _span(longer, 20, 24)]})
    with pytest.raises(ClientError, match=r"bets 20-23 \(numbered from 0\) are stored on the server but this file"):
        _uploader(fake, path, upload_id="sha256-old").run()
    assert fake.posts() == 0


def test_spans_without_a_digest_are_accepted_with_a_warning(tmp_path: Path, caplog) -> None:
    path, lines = _agency_file(tmp_path, 8)
    own = scan(path).upload_id
    fake = FakeServer({own: [_span(lines, 0, 4, digest=False)]})
    with caplog.at_level(logging.WARNING, logger="client"):
        assert _uploader(fake, path).run() == 8
    assert "stored by an older server, cannot be checked against the file" in caplog.text
    assert fake.posts() == 1


def test_the_one_other_upload_that_matches_is_resumed(tmp_path: Path, caplog) -> None:
    path, lines = _agency_file(tmp_path, 20)  # e.g. the old file with a rejected line fixed in place
    other, other_lines = _agency_file(tmp_path, 6, "other.csv")
    fake = FakeServer(
        {"sha256-fixed": [_span(lines, 0, 4), _span(lines, 8, 12)], "sha256-unrelated": [_span(other_lines, 0, 6)]}
    )
    uploader = _uploader(fake, path)
    with caplog.at_level(logging.INFO, logger="client"):
        uploader.run()
    assert uploader.upload_id == "sha256-fixed"
    assert "result: resuming | agencia: 1 | upload_id: sha256-fixed" in caplog.text
    assert fake.posts() == 3
    assert all(path.endswith("/bets") for method, path in fake.requests if method == "POST")


@pytest.mark.parametrize("matching", [0, 2])
def test_other_uploads_are_refused_unless_exactly_one_matches(tmp_path: Path, matching: int) -> None:
    path, lines = _agency_file(tmp_path, 12)
    _, other_lines = _agency_file(tmp_path, 6, "other.csv")
    uploads = {"sha256-unrelated": [_span(other_lines, 0, 6)]}
    for n in range(matching):
        uploads[f"sha256-match{n}"] = [_span(lines, 0, 4)]
    fake = FakeServer(uploads)
    with pytest.raises(ClientError) as error:
        _uploader(fake, path).run()
    message = str(error.value)
    assert "agency 1 has other uploads this round: sha256-unrelated (6 bets)" in message
    assert ("more than one of them matches" if matching else "none of them matches this file") in message
    assert "Rerun with --upload-id ID to continue one of them, or with --another-file" in message
    assert fake.posts() == 0
    # The user says it is really another file: it is stored under its own id.
    fake.requests.clear()
    uploader = _uploader(fake, path, another_file=True)
    uploader.run()
    assert uploader.upload_id == scan(path).upload_id and fake.posts() == 3


def test_an_other_upload_without_digests_is_never_resumed_on_a_guess(tmp_path: Path) -> None:
    path, lines = _agency_file(tmp_path, 12)
    fake = FakeServer({"sha256-old": [_span(lines, 0, 4, digest=False)]})
    with pytest.raises(ClientError, match="none of them matches this file"):
        _uploader(fake, path).run()


def test_an_older_server_without_the_uploads_list_still_uploads(tmp_path: Path) -> None:
    path, _ = _agency_file(tmp_path, 9)
    fake = FakeServer({}, lists_uploads=False)
    assert _uploader(fake, path).run() == 9
    assert fake.posts() == 3


def test_the_rejection_advice_says_fix_in_place_and_names_the_line(tmp_path: Path) -> None:
    from client.http import Rejected
    from client.upload import Piece, explain_rejection

    problem = {
        "detail": "1 invalid bet",
        "errors": [{"index": 1, "field": "birthdate", "message": "is not a valid date"}],
    }
    error = Rejected(httpx.Response(422, json=problem))
    text = explain_rejection(error, Path("a.csv"), Piece(5, 8, b"", [7, 9, 10]), "sha256-x")
    assert text == (
        "chunk a.csv:7-10 rejected (422): a.csv:9: birthdate is not a valid date. Nothing of that chunk was stored. "
        "Fix the bad line in place (keep the same lines in the same order: do not delete or insert lines) and "
        "rerun with --upload-id sha256-x to send only what is missing"
    )


# -- options: every one of them, command line > environment > config file ------------------------

EVERY_OPTION = {
    # option: (YAML key and value, environment variable and value, command line value, resolved from each)
    "server": (("server", {"url": "http://yaml:1"}), ("LOTTERY_SERVER", "http://env:2"), "http://cli:3"),
    "agency": (("agency", 1), ("LOTTERY_AGENCY", "2"), 3),
    "file": (("file", "y.csv"), ("LOTTERY_BETS_FILE", "e.csv"), "c.csv"),
    "batch_size": (("batch", {"maxAmount": 1}), ("LOTTERY_BATCH_SIZE", "2"), 3),
    "concurrency": (("batch", {"concurrency": 1}), ("LOTTERY_CONCURRENCY", "2"), 3),
    "timeout": (("timeout", 1), ("LOTTERY_TIMEOUT", "2"), 3.0),
    "retries": (("retries", 1), ("LOTTERY_RETRIES", "2"), 3),
    "retry_budget": (("retry_budget", 60), ("LOTTERY_RETRY_BUDGET", "120"), 240.0),
    "log_level": (("log", {"level": "debug"}), ("LOTTERY_LOG_LEVEL", "warning"), None),
    "token": (("token", "yaml-token"), ("LOTTERY_TOKEN", "env-token"), "cli-token"),
    "cacert": (("cacert", "y.pem"), ("LOTTERY_CACERT", "e.pem"), "c.pem"),
    "quiet": (("quiet", False), ("LOTTERY_QUIET", "true"), None),
    "insecure": (("insecure", False), ("LOTTERY_INSECURE", "1"), None),
}


@pytest.mark.parametrize("name", EVERY_OPTION)
def test_every_option_command_line_beats_environment_beats_config_file(tmp_path: Path, name: str) -> None:
    import yaml

    (key, value), (variable, env_value), cli_value = EVERY_OPTION[name]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({key: value}))
    from_yaml = getattr(resolve({"config": str(config)}, environ={}), name)
    from_env = getattr(resolve({"config": str(config)}, environ={variable: env_value}), name)
    assert from_yaml != from_env != Options().__dict__[name] or name in ("quiet", "insecure")
    if cli_value is not None:
        from_cli = getattr(resolve({"config": str(config), name: cli_value}, environ={variable: env_value}), name)
        assert from_cli not in (from_yaml, from_env)
        assert str(from_cli).endswith(str(cli_value).removeprefix("c"))


def test_a_token_file_on_the_command_line_beats_the_token_in_the_environment(tmp_path: Path) -> None:
    (tmp_path / "cli").write_text("token-from-the-cli-file\n")
    (tmp_path / "env").write_text("token-from-the-env-file\n")
    (tmp_path / "c.yaml").write_text("token: token-from-yaml\n")
    env = {"LOTTERY_TOKEN": "token-from-env", "LOTTERY_CONFIG": str(tmp_path / "c.yaml")}
    assert resolve({"token_file": str(tmp_path / "cli")}, environ=env).token == "token-from-the-cli-file"
    assert resolve({}, environ=env).token == "token-from-env"
    env_file = {"LOTTERY_TOKEN_FILE": str(tmp_path / "env"), "LOTTERY_CONFIG": str(tmp_path / "c.yaml")}
    assert resolve({}, environ=env_file).token == "token-from-the-env-file"
    assert resolve({"token": "t-cli"}, environ=env_file).token == "t-cli"
    assert resolve({}, environ={"LOTTERY_CONFIG": str(tmp_path / "c.yaml")}).token == "token-from-yaml"


# -- the command line's help and messages (issue 13) -----------------------------------------------


def _help(capsys, *argv: str) -> str:
    from client.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_texts_describe_every_command_and_option(capsys) -> None:
    top = _help(capsys)
    assert "`" not in top
    for name in ("run", "bet", "winners", "generate"):
        text = _help(capsys, name)
        description = text.split("\n\n")[1]
        assert not description.startswith(("options:", "positional")), f"{name} has no description"
    run = _help(capsys, "run")
    assert "required (on the command line, in the environment or in --config):" in run
    required = run.split("required (on the command line")[1]
    assert "--agency" in required and "--file" in required
    assert "retries of a request after its first attempt" in " ".join(run.split()) and "--retry-budget" in run
    bet = _help(capsys, "bet")
    for variable in ("NOMBRE", "APELLIDO", "DOCUMENTO", "NACIMIENTO", "NUMERO"):
        assert variable in bet
    from client.cli import parser as _parser

    commands = next(a for a in _parser()._actions if a.dest == "command")
    for name, sub in commands.choices.items():  # every option of every command says what it is
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_help_shows_what_each_command_really_takes(capsys, monkeypatch) -> None:
    # Issue 25: `rounds --help` listed --agency as required (rounds needs none), `generate --help`
    # offered a --config it lacks, and `run --help` named few of the LOTTERY_* variables it reads.
    monkeypatch.setenv("COLUMNS", "200")
    rounds = _help(capsys, "rounds")
    assert "required" not in rounds and "--agency" not in rounds
    generate = _help(capsys, "generate")
    assert "--config" not in generate and "LOTTERY_" not in generate and "environment" not in generate
    run = _help(capsys, "run")
    for variable in (
        "LOTTERY_AGENCY", "CLI_ID", "LOTTERY_BETS_FILE", "LOTTERY_SERVER", "LOTTERY_BATCH_SIZE",
        "CLI_BATCH_MAXAMOUNT", "LOTTERY_CONCURRENCY", "LOTTERY_TOKEN", "LOTTERY_TOKEN_FILE", "LOTTERY_TIMEOUT",
        "LOTTERY_RETRIES", "LOTTERY_RETRY_BUDGET", "LOTTERY_UPLOAD_ID", "LOTTERY_QUIET", "LOTTERY_JSON",
        "LOTTERY_CACERT", "LOTTERY_INSECURE", "LOTTERY_CONFIG", "LOTTERY_LOG_LEVEL", "CLI_LOG_LEVEL",
    ):  # fmt: skip
        assert variable in run, variable


def _fake_api(handler, **kwargs):
    from client.http import Api

    return Api("http://lottery.test", transport=httpx.MockTransport(handler), **kwargs)


def test_retries_n_means_n_retries_after_the_first_attempt(caplog) -> None:
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(503, headers={"retry-after": "0"})

    api = _fake_api(handler, retries=2)
    with pytest.raises(ClientError, match=r"giving up on GET /status after 3 attempts in 0 s: HTTP 503"):
        api.request("GET", "/status")
    assert len(calls) == 3
    assert caplog.text.count("action: reintento") == 1  # one line: waiting for the server


def test_an_unreachable_server_is_named() -> None:
    def handler(request):
        raise httpx.ConnectError("connection refused")

    with pytest.raises(ClientError, match=r"after 1 attempts in 0 s: server unreachable at http://lottery.test$"):
        _fake_api(handler, retries=0).request("GET", "/status")


class EarlyAnswer:
    """A socket server on 127.0.0.1 that reads a request's head, not its body, then answers
    ``answer`` (or nothing) and closes: the unread body makes the close a reset, so the
    client's write fails mid-body, as when a server refuses a chunk by its Content-Length."""

    def __init__(self, answer: bytes | None):
        self.answer, self.connections = answer, 0
        self._listener = listen(self._serve)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self, conn: socket.socket) -> None:
        self.connections += 1
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            if self.answer is not None:
                conn.sendall(self.answer)
                conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()


TOO_LARGE = b'{"title": "Chunk too large", "status": 413, "detail": "a chunk carries at most 1048576 bytes"}'


def test_a_413_answered_before_the_body_was_read_is_the_outcome_and_is_not_retried() -> None:
    from client.http import Api, Rejected

    head = b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/problem+json\r\nConnection: close\r\n"
    server = EarlyAnswer(head + b"Content-Length: %d\r\n\r\n" % len(TOO_LARGE) + TOO_LARGE)
    api = Api(server.url, retries=3)
    try:
        with pytest.raises(Rejected) as error:
            api.request("POST", "/agencies/1/bets", content=b"x" * (64 << 20))  # far more than socket buffers
    finally:
        api.close()
        server.close()
    assert (error.value.status, str(error.value)) == (413, "server answered 413: a chunk carries at most 1048576 bytes")
    assert server.connections == 1


def test_a_server_that_drops_the_connection_unanswered_is_retried_and_named() -> None:
    from client.http import Api

    server = EarlyAnswer(None)
    api = Api(server.url, retries=1)
    try:
        with pytest.raises(ClientError) as error:
            api.request("POST", "/agencies/1/bets", content=b"x" * (64 << 20))
    finally:
        api.close()
        server.close()
    assert str(error.value) == (
        f"giving up on POST /agencies/1/bets after 2 attempts in 0 s: connection error with {server.url} "
        "(RemoteProtocolError: Server disconnected without sending a response.)"
    )
    assert server.connections == 2


def test_a_chunk_too_large_says_to_lower_the_batch_size(tmp_path: Path) -> None:
    from client.upload import Uploader

    class RefusesChunks(FakeServer):
        def handler(self, request):
            if request.method == "POST":
                return httpx.Response(413, content=TOO_LARGE, headers={"Content-Type": "application/problem+json"})
            return super().handler(request)

    path, _ = _agency_file(tmp_path, 9)
    with pytest.raises(ClientError) as error:
        Uploader(RefusesChunks({}).api(), 1, path, batch_size=3, concurrency=1).run()
    assert str(error.value) == (
        f"chunk {path}:2-4 rejected: server answered 413: a chunk carries at most 1048576 bytes. "
        "The server takes smaller chunks: rerun with a smaller --batch-size (this chunk had 3 bets)"
    )


def test_httpx_is_imported_for_the_first_request_only_and_without_its_command_line_tool() -> None:
    import subprocess
    import sys

    probe = """
import sys
from client.__main__ import main
try:
    main(["--help"])
except SystemExit:
    pass
from client.http import Api
api = Api("http://127.0.0.1:9")
assert "httpx" not in sys.modules, "imported before any request"
api._http()
assert "httpx" in sys.modules and sys.modules["httpx._main"] is None
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_retry_after_header_is_read_in_one_place() -> None:
    from client.http import retry_after

    assert retry_after(httpx.Response(503, headers={"retry-after": "7"}), 0.0) == 7.0
    assert retry_after(httpx.Response(503, headers={"retry-after": "999"}), 0.0) == 60.0
    assert retry_after(httpx.Response(503, headers={"retry-after": "Fri, 27 Nov 2026 10:00:00 GMT"}), 1.5) == 1.5
    assert retry_after(httpx.Response(503), 2.0) == 2.0
    import client.winners

    source = Path(client.winners.__file__).read_text()
    assert "retry-after" not in source.lower().replace("retry_after", "")


@pytest.mark.parametrize("server", ["counts", "lists (before issue 21)"])
def test_waiting_for_the_draw_says_for_how_many_agencies(caplog, server) -> None:
    from client.winners import wait_for_winners

    polls = []

    def handler(request):
        if request.url.path == "/status":
            done = 1 + len(polls)
            shown = {"done_count": done} if server == "counts" else {"done": list(range(1, done + 1))}
            return httpx.Response(200, json={"expected": 5, **shown, "drawn": False})
        polls.append(int(request.url.params["wait"]))
        if len(polls) < 3:
            return httpx.Response(425, json={"detail": "not yet"}, headers={"Retry-After": "0"})
        return httpx.Response(200, json={"agency": 1, "winners": ["30904465"]})

    with caplog.at_level(logging.INFO, logger="client"):
        assert wait_for_winners(_fake_api(handler), 1, timeout=100, wait=True) == ["30904465"]
    assert polls[0] == 0 and all(0 < hold <= 30 for hold in polls[1:])  # then long polls
    lines = [r.getMessage() for r in caplog.records if "espera_sorteo" in r.getMessage()]
    assert len(lines) == 2
    assert "finalizadas: 2/5 | esperando_agencias: 3" in lines[0]
    assert "finalizadas: 3/5 | esperando_agencias: 2" in lines[1]


def test_winners_before_the_draw_points_to_wait() -> None:
    from client.winners import wait_for_winners

    api = _fake_api(lambda request: httpx.Response(425, json={"detail": "not yet"}, headers={"Retry-After": "1"}))
    with pytest.raises(ClientError, match=r"the draw has not happened yet .*: use --wait to wait for it"):
        wait_for_winners(api, 1, timeout=10, wait=False)


# -- TLS decisions (issue 10, the uploader's side) --------------------------------------------------


@pytest.mark.parametrize(
    "server, token, insecure, refused",
    [
        ("http://lottery.example:8000", "t", False, True),
        ("http://10.0.0.5:8000", "t", False, True),
        ("http://lottery.example:8000", "t", True, False),
        ("http://lottery.example:8000", None, False, False),
        ("https://lottery.example", "t", False, False),
        ("http://127.0.0.1:8000", "t", False, False),
        ("http://127.3.4.5:8000", "t", False, False),
        ("http://localhost:8000", "t", False, False),
        ("http://[::1]:8000", "t", False, False),
    ],
)
def test_a_token_is_never_sent_in_clear_to_another_machine(server, token, insecure, refused) -> None:
    from client.http import InsecureServer, check_transport

    if refused:
        with pytest.raises(InsecureServer) as error:
            check_transport(server, token, insecure)
        assert str(error.value) == (
            f"refusing to send the agency token in clear text to {server}: use an https:// server URL "
            "(--cacert FILE if it has a private CA), or pass --insecure if this network is trusted"
        )
    else:
        check_transport(server, token, insecure)


def test_the_command_line_refuses_a_token_over_plain_http(tmp_path: Path, capsys) -> None:
    from client.__main__ import main

    (tmp_path / "a.csv").write_text("Ana,Gomez,1,1990-01-01,5\n")
    argv = ["run", "--agency", "1", "--file", str(tmp_path / "a.csv"), "--server", "http://lottery.example"]
    assert main([*argv, "--token", "secret"]) == 2
    assert "refusing to send the agency token in clear text to http://lottery.example" in capsys.readouterr().err


def test_what_the_server_certificate_is_verified_with(tmp_path: Path) -> None:
    import ssl

    from client.http import InsecureServer, tls_verify

    assert tls_verify("http://127.0.0.1:8000", tmp_path / "ca.pem") is False  # no TLS, no CA bundle loaded
    assert tls_verify("https://lottery.example", None) is True  # httpx's default verification
    with pytest.raises(InsecureServer, match=f"cannot use CA certificate file {tmp_path}/ca.pem: "):
        tls_verify("https://lottery.example", tmp_path / "ca.pem")
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(InsecureServer, match="cannot use CA certificate file"):
        tls_verify("https://lottery.example", tmp_path / "ca.pem")
    trustme = pytest.importorskip("trustme")
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = tls_verify("https://lottery.example", tmp_path / "ca.pem")
    assert context.verify_mode == ssl.CERT_REQUIRED and len(context.get_ca_certs()) == 1  # only that CA


def test_an_untrusted_certificate_is_one_clear_error_not_retried() -> None:
    import ssl

    calls = []

    def handler(request):
        calls.append(request)
        error = ssl.SSLCertVerificationError(1, "certificate verify failed")
        error.verify_message = "unable to get local issuer certificate"
        raise httpx.ConnectError("certificate verify failed") from error

    api = _fake_api(handler, retries=5)
    with pytest.raises(ClientError) as error:
        api.request("GET", "/status")
    assert str(error.value) == (
        "the certificate of http://lottery.test is not trusted (unable to get local issuer certificate): "
        "if it uses a private CA, pass that CA's certificate with --cacert FILE (or LOTTERY_CACERT)"
    )
    assert len(calls) == 1


@pytest.mark.parametrize("newest", [1, 2])
def test_a_chunk_refused_because_its_round_was_drawn_names_the_next_round_when_one_opened(newest):
    """A chunk in flight when its round was drawn gets 409 "the draw has already happened"; if a
    newer round opened meanwhile the uploader says so (and sends nothing there), else the 409 stands."""
    from client.http import Api, Rejected
    from client.rounds import RoundApi

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if request.url.path == "/rounds":
            return httpx.Response(200, json={"rounds": [{"round": newest}]})
        problem = {"title": "Agency closed", "status": 409, "detail": "the draw has already happened"}
        return httpx.Response(409, json=problem, headers={"content-type": "application/problem+json"})

    api = RoundApi(Api("http://lottery.test", retries=0, transport=httpx.MockTransport(handler)), 1)
    if newest == 1:
        with pytest.raises(Rejected, match="the draw has already happened"):
            api.request("POST", "/agencies/1/bets", content=b"x")
    else:
        with pytest.raises(ClientError, match="round 1 is over and the server's current round is now 2"):
            api.request("POST", "/agencies/1/bets", content=b"x")
    assert seen == [("POST", "/rounds/1/agencies/1/bets"), ("GET", "/rounds")]


@pytest.mark.parametrize("token", ["-Zx9Lq", "--Zx9Lq", "-"])
def test_a_token_that_begins_with_a_dash_is_still_the_tokens_value(tmp_path: Path, capsys, token: str) -> None:
    # argparse read "--token -Zx9Lq" as an option without its value (exit 2, "expected one
    # argument"): about one token in 64 that python -m app.tokens made began with "-".
    from client.__main__ import main

    (tmp_path / "a.csv").write_text("Ana,Gomez,1,1990-01-01,5\n")
    argv = ["run", "--agency", "1", "--file", str(tmp_path / "a.csv"), "--server", "http://lottery.example"]
    assert main(["run", "--token", token, *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert "refusing to send the agency token in clear text" in err, err  # parsed: the token check ran
    with pytest.raises(SystemExit):  # a missing value is still an error, not the next option taken as it
        main([*argv, "--token", "--json"])
    assert "--token: expected one argument" in capsys.readouterr().err


def test_made_tokens_never_begin_with_a_dash() -> None:
    # Safe as the value of --token, or of any option of any tool, as `python -m app.tokens` prints them.
    from app.tokens import make

    tokens = [token for _ in range(40) for token in make(50).values()]
    assert [t for t in tokens if t.startswith("-")] == []
    assert len(set(tokens)) == len(tokens) and {len(t) for t in tokens} == {43}


@pytest.mark.parametrize(
    "drawn, newest, current, reason",
    [
        (False, True, 1, None),
        (True, True, 1, "round 1 is drawn: ask the operator to open the next one"),
        (True, False, 1, "round 1 is drawn: ask the operator to open the next one"),
        (True, False, 2, "round 1 is drawn and round 2 is open: run without --round to upload into round 2"),
    ],
)
def test_a_drawn_round_names_what_to_do(drawn: bool, newest: bool, current: int, reason: str | None) -> None:
    # Issue 25: `run --round 1` into a drawn round 1 while round 2 is open points to round 2.
    from client.rounds import RoundApi, drawn_reason

    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json={"rounds": [{"round": current}]})

    api = RoundApi(_fake_api(handler, retries=0), 1, drawn=drawn, newest=newest)
    assert drawn_reason(api) == reason
    assert asked == ([] if newest or not drawn else ["/rounds"])  # the newest round was learned at start
