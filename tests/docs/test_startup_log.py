"""A server that starts on a round says which: id, state, bets and done agencies, in one line.

So an operator who restarts on a drawn round (every upload 409) sees it in the first line
of the log instead of finding out from the agencies.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.settings import Settings
from tests.helpers import round_file
from tests.postgres_db import fresh_database, require_postgres


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def round_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("action: ronda |")]


@settings(max_examples=15, deadline=None)
@given(bets=st.lists(st.integers(0, 40), min_size=3, max_size=3), done=st.sets(st.integers(1, 3)))
def test_start_names_the_round_it_finds(tmp_path_factory, bets, done):
    data = tmp_path_factory.mktemp("round") / "data"
    config = Settings(data_dir=data, agencies=3)
    handler = Lines()
    logger = logging.getLogger("lottery")
    logger.addHandler(handler)
    try:
        with TestClient(create_app(config)) as client:
            for agency, count in enumerate(bets, 1):
                if count:
                    body = "".join(f"Ana,Paz,{agency}{i},1990-01-01,{i}\n" for i in range(count))
                    assert (
                        client.post(
                            f"/agencies/{agency}/bets", content=body, headers={"content-type": "text/csv"}
                        ).status_code
                        == 201
                    )
            for agency in sorted(done):
                client.post(f"/agencies/{agency}/done")
        handler.lines.clear()
        create_app(config)  # a restart: what a new worker logs
    finally:
        logger.removeHandler(handler)
    state = "drawn" if done == {1, 2, 3} else "open"
    [line] = round_lines(handler.lines)
    assert line.startswith(
        f"action: ronda | result: success | id: 1 | state: {state} | bets: {sum(bets)} | "
        f"done: {len(done)}/3 | storage: {data}"
    ), line
    assert ("opens the next one with POST /rounds" in line) == (state == "drawn")


def test_database_password_is_not_logged():
    from app.startup import where

    config = Settings(data_dir=Path("x"), database_url="postgresql://lottery:s3cret@db:5432/lottery")
    assert where(config) == "postgresql://db:5432/lottery"


def crash_before_the_draw(backend: str, tmp_path: Path, database_url: str | None) -> Settings:
    """A round whose agencies are all done but which was never drawn (a crash in between)."""
    config = Settings(data_dir=tmp_path / "data", agencies=2, database_url=database_url)
    with TestClient(create_app(config)) as client:
        body = "Ana,Paz,1,1990-01-01,7574\nLuis,Paz,2,1990-01-01,1\n"
        assert client.post("/agencies/1/bets", content=body, headers={"content-type": "text/csv"}).status_code == 201
        assert client.post("/agencies/1/done").json()["drawn"] is False
    if backend == "files":
        (round_file(config.data_dir, "done.json")).write_text(json.dumps({"agencies": [1, 2]}))
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO lottery_done (round, agency) VALUES (1, 2)")
    return config


@pytest.mark.parametrize("backend", ["files", "postgres"])
def test_starting_never_draws_it_says_the_first_query_will(tmp_path, backend):
    with contextlib.ExitStack() as stack:
        url = None
        if backend == "postgres":
            require_postgres()
            url = stack.enter_context(fresh_database())
        config = crash_before_the_draw(backend, tmp_path, url)
        handler = Lines()
        logger = logging.getLogger("lottery")
        logger.addHandler(handler)
        try:
            app = create_app(config)  # what each worker does at start
            started = list(handler.lines)
            with TestClient(app) as client:
                status = client.get("/status").json()
        finally:
            logger.removeHandler(handler)
    [line] = round_lines(started)
    assert "| state: closed, the first query draws | bets: 2 | done: 2/2 |" in line, line
    assert not [x for x in started if "action: sorteo" in x]  # the start did not draw
    assert status["drawn"] is True  # the first query did
    assert len([x for x in handler.lines if "action: sorteo" in x]) == 1
