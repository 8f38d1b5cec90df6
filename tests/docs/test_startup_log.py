"""A server that starts on a round says which: id, state, bets and done agencies, in one line.

So an operator who restarts on a drawn round (every upload 409) sees it in the first line
of the log instead of finding out from the agencies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.settings import Settings


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
        f"done: {len(done)}/3 {sorted(done)} | storage: {data}"
    ), line
    assert ("move the data away" in line) == (state == "drawn")


def test_database_password_is_not_logged():
    from app.startup import where

    config = Settings(data_dir=Path("x"), database_url="postgresql://lottery:s3cret@db:5432/lottery")
    assert where(config) == "postgresql://db:5432/lottery"
