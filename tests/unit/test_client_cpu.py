"""The uploader's CPU work (issue 15) keeps its results: the same cuts, the same verdicts, fewer requests."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import client.lines
from client.lines import MalformedFile, skip_lines

# -- cutting a block into chunks: the n-th line found by counting, not matching ----------------


def _offset_by_lines(data: bytes, pos: int, n: int) -> int:
    for _ in range(n):
        pos = data.index(b"\n", pos) + 1
    return pos


@settings(max_examples=500, deadline=None)
@given(
    lengths=st.lists(st.one_of(st.integers(0, 60), st.sampled_from([0, 1, 2_000, 20_000])), min_size=1, max_size=400),
    data=st.data(),
)
def test_skip_lines_finds_the_nth_line_whatever_the_line_lengths(lengths: list[int], data) -> None:
    block = b"".join(b"x" * length + b"\n" for length in lengths)
    first = data.draw(st.integers(0, len(lengths) - 1))
    n = data.draw(st.integers(0, len(lengths) - first))
    pos = _offset_by_lines(block, 0, first)
    assert skip_lines(block, pos, n, len(lengths) - first) == _offset_by_lines(block, pos, n)


# -- the UTF-8 check, decoded a piece at a time, names the line a whole decode names -------------

_fragments = st.sampled_from(
    [
        b"a",
        b",",
        b"\n",
        b"\xc3\xa1",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        b"\xc3",
        b"\xe2\x82",
        b"\xff",
        b"\xed\xa0\x80",
    ]
)


@settings(max_examples=500, deadline=None)
@given(fragments=st.lists(_fragments, min_size=1, max_size=60), piece=st.integers(4, 9))
def test_the_utf8_check_in_pieces_names_the_line_a_whole_decode_names(fragments: list[bytes], piece: int) -> None:
    data = b"".join(fragments) + b"\n"
    try:
        data.decode("utf-8")
        expected = None
    except UnicodeDecodeError as error:
        line = 7 + data.count(b"\n", 0, error.start)
        expected = f"f.csv:{line}: malformed CSV: not valid UTF-8"
    saved, client.lines.UTF8_PIECE = client.lines.UTF8_PIECE, piece  # characters cut at every piece boundary
    try:
        client.lines._check_utf8(Path("f.csv"), 7, data)
        found = None
    except MalformedFile as error:
        found = str(error)
    finally:
        client.lines.UTF8_PIECE = saved
    assert found == expected


# -- requests before the first chunk -------------------------------------------------------------


def _file(tmp_path: Path, bets: int) -> tuple[Path, list[str]]:
    lines = [f"Ana {i},Paz,{i},1990-01-01,{i}" for i in range(bets)]
    path = tmp_path / "agency.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path, lines


class Recorder:
    """Contract-shaped answers for the upload routes; records (method, path) of every request."""

    def __init__(self, uploads: dict[str, list[tuple[int, int, str]]], lists_uploads: bool = True):
        self.uploads, self.lists_uploads, self.requests = uploads, lists_uploads, []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        name = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET" and name == "uploads":
            if not self.lists_uploads:
                return httpx.Response(404, json={"title": "Not Found"})
            listed = [{"upload_id": u, "bets": sum(e - s for s, e, _ in spans)} for u, spans in self.uploads.items()]
            return httpx.Response(200, json={"uploads": listed})
        if request.method == "GET":
            spans = [{"start": s, "end": e, "digest": d} for s, e, d in self.uploads.get(name, [])]
            return httpx.Response(200, json={"upload_id": name, "committed": [], "bets": 0, "spans": spans})
        return httpx.Response(201, json={"stored": request.content.count(b"\n")})

    def run(self, path: Path, **kwargs) -> list[tuple[str, str]]:
        from client.http import Api
        from client.upload import Uploader

        api = Api("http://lottery.test", retries=0, transport=httpx.MockTransport(self.handler))
        Uploader(api, 1, path, batch_size=4, concurrency=1, **kwargs).run()
        return [(m, p.removeprefix("/agencies/1")) for m, p in self.requests]


def _digest(lines: list[str], start: int, end: int) -> str:
    return hashlib.sha256("".join(line + "\n" for line in lines[start:end]).encode()).hexdigest()


def test_a_fresh_upload_asks_one_question_before_sending(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, 10)
    assert Recorder({}).run(path) == [("GET", "/uploads")] + [("POST", "/bets")] * 3


def test_a_begun_upload_is_listed_then_its_spans_read(tmp_path: Path) -> None:
    from client.upload import scan

    path, lines = _file(tmp_path, 10)
    own = scan(path).upload_id
    requests = Recorder({own: [(0, 4, _digest(lines, 0, 4))]}).run(path)
    assert requests == [("GET", "/uploads"), ("GET", f"/uploads/{own}")] + [("POST", "/bets")] * 2


def test_an_older_server_without_the_list_is_asked_for_the_upload_itself(tmp_path: Path) -> None:
    from client.upload import scan

    path, _ = _file(tmp_path, 10)
    own = scan(path).upload_id
    requests = Recorder({}, lists_uploads=False).run(path)
    assert requests == [("GET", "/uploads"), ("GET", f"/uploads/{own}")] + [("POST", "/bets")] * 3


@pytest.mark.parametrize("kwargs", [{"upload_id": "sha256-given"}, {"another_file": True}])
def test_a_named_upload_or_another_file_reads_only_its_own_spans(tmp_path: Path, kwargs: dict) -> None:
    from client.upload import scan

    path, _ = _file(tmp_path, 10)
    own = kwargs.get("upload_id") or scan(path).upload_id
    requests = Recorder({"sha256-other": [(0, 4, "0" * 64)]}).run(path, **kwargs)
    assert requests == [("GET", f"/uploads/{own}")] + [("POST", "/bets")] * 3


def test_every_request_carries_the_headers_the_client_always_sent(tmp_path: Path) -> None:
    from client.http import Api

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    api = Api("https://lottery.test/", token="t0k", retries=0, transport=httpx.MockTransport(handler))
    api.request("GET", "/rounds", params={"limit": 1})
    api.request("POST", "/agencies/1/bets", content=b"a,b,1,1990-01-01,1\n", headers={"Upload-Offset": "0"})
    api.request("POST", "/agencies/1/bets", json={"bets": []})
    first, body, as_json = seen
    assert str(first.url) == "https://lottery.test/rounds?limit=1"
    for request in seen:
        assert request.headers["user-agent"] == "lottery-uploader/1.0"
        assert request.headers["authorization"] == "Bearer t0k"
    assert (body.content, body.headers["content-length"], body.headers["upload-offset"]) == (
        b"a,b,1,1990-01-01,1\n",
        "19",
        "0",
    )
    assert (as_json.content, as_json.headers["content-type"]) == (b'{"bets":[]}', "application/json")


# -- the command line: only the command being run gets its options built ------------------------


@pytest.mark.parametrize("command", ["run", "bet", "winners", "rounds", "generate"])
def test_a_parser_built_for_one_command_reads_and_helps_it_as_the_whole_one(command: str, capsys) -> None:
    from client.cli import parser as _parser

    def outcome(only: str | None, argv: list[str]) -> tuple:
        try:
            parsed = vars(_parser(only=only).parse_args(argv))
        except SystemExit as exit:
            parsed = exit.code
        return parsed, capsys.readouterr()

    for argv in (
        [command, "--help"],
        [command, "--agency", "3", "--server", "h:1", "--json", "--round", "2", "--file", "f", "--out", "o"],
        [command, "--agency", "x"],
        [command, "--no-such-option"],
    ):
        assert outcome(command, argv) == outcome(None, argv)


# -- a later round reads the file once ------------------------------------------------------------


def test_a_run_in_a_later_round_reads_its_file_once(tmp_path: Path, monkeypatch, capsys) -> None:
    import client.__main__
    import client.commands
    import client.lines
    from client.http import Api

    path, _ = _file(tmp_path, 10)

    def handler(request: httpx.Request) -> httpx.Response:
        route = request.url.path
        if route == "/rounds":
            return httpx.Response(200, json={"rounds": [{"round": 2, "state": "open", "agencies": 1}]})
        if route.startswith("/rounds/1/"):  # the earlier round never saw this file
            return httpx.Response(404, json={"title": "Not Found"})
        if route.endswith("/uploads"):
            return httpx.Response(200, json={"uploads": []})
        if "/uploads/" in route:
            return httpx.Response(200, json={"upload_id": "x", "committed": [], "bets": 0, "spans": []})
        if route.endswith("/bets"):
            return httpx.Response(201, json={"stored": request.content.count(b"\n")})
        if route.endswith("/done"):
            return httpx.Response(200, json={"done": 1, "expected": 1})
        return httpx.Response(200, json={"winners": ["30000001"]})

    reads = []
    raw_blocks = client.lines.raw_blocks

    def counted(*args, **kwargs):
        reads.append(args[0])
        return raw_blocks(*args, **kwargs)

    monkeypatch.setattr(client.lines, "raw_blocks", counted)
    monkeypatch.setattr(
        client.commands,
        "api",
        lambda options, stop=None: Api(options.server, stop=stop, transport=httpx.MockTransport(handler)),
    )
    assert client.__main__.main(["run", "--agency", "1", "--file", str(path), "--server", "http://t", "--json"]) == 0
    assert capsys.readouterr().out == '{"agency": 1, "winners": ["30000001"]}\n'
    assert reads == [str(path)]


# -- the command line: one option table, one command's module ------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--agency", "1", "--file", "/nonexistent.csv", "--server", "127.0.0.1:9"],
        ["winners", "--agency", "0"],
        ["generate", "--out", "{tmp}", "--agencies", "1", "--bets", "1"],
        ["rounds", "--help"],
    ],
)
def test_only_the_given_commands_module_is_imported(tmp_path: Path, argv: list[str]) -> None:
    import json
    import subprocess
    import sys

    probe = """
import json, sys
from client.__main__ import main
try:
    main(json.loads(sys.argv[1]))
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("client.commands."))))
"""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(argv)], cwd=root, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert loaded == (
        [] if "--help" in argv or argv[:3] == ["winners", "--agency", "0"] else [f"client.commands.{argv[0]}"]
    )


def test_every_option_help_names_its_environment_variables_and_config_keys(capsys, monkeypatch) -> None:
    from client.cli import COMMANDS, parser
    from client.options import TABLE

    monkeypatch.setenv("COLUMNS", "400")  # one line per option
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            parser(only=command).parse_args([command, "--help"])
        text = capsys.readouterr().out
        # Each option's entry: from its "  --flag" line to the next option's (or a blank line).
        entries = {b.split()[0]: b for b in re.split(r"\n(?=  -)|\n\n", text) if b.startswith("  --")}
        for entry in TABLE:
            if command not in entry.commands or command in entry.hidden:
                assert entry.flag not in entries, (command, entry.flag)
                continue
            for name in (*entry.env, *entry.config):
                assert name in entries[entry.flag], (command, entry.flag, name)
