"""The uploader's pieces without a server: options, file scanning, chunk planning, progress."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.config import DEFAULT_BATCH_SIZE, ConfigError, resolve
from client.http import ClientError
from client.progress import Progress
from client.upload import plan, scan

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
    ) == ("http://server:12345", 3, Path("a.csv"), 100, 2, "DEBUG")

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
        bet_lines.append(f"N{index},L,{index},1990-01-01,{index % 10}\r\n")
        lines.append(bet_lines[-1])
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
        assert 1 <= len(piece.lines) <= batch
        assert not skipped & set(range(piece.start, piece.end))  # never crosses a stored range
        assert piece.body() == "".join(bet_lines[piece.start : piece.end]).encode()
        assert piece.numbers == [numbers[i] for i in range(piece.start, piece.end)]  # the file's line numbers


def test_plan_reads_the_file_a_block_at_a_time(tmp_path: Path, monkeypatch) -> None:
    import client.upload

    monkeypatch.setattr(client.upload, "READ_BLOCK", 64)  # lines straddle every block boundary
    lines = [f"Nombre {i},Apellido,{i},1990-01-01,{i}\n" for i in range(200)]
    path = _write(tmp_path, lines)
    pieces = list(plan(path, 30, [(40, 90)]))
    assert b"".join(p.body() for p in pieces) == "".join(lines[:40] + lines[90:]).encode()
    assert scan(path).bets == 200


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
