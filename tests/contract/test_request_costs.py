# ruff: noqa: F811 - the imported fixtures (backend) are parameters here
"""What an agency or the operator asks on every request costs the same with 3 agencies or
100,000 (issue 21), on both backends. Not timed: each test counts the work instead, as the
size of an answer or the store reads a request makes.

``Store.agency_stats`` reads every agency of the round (the operator's per-agency counts): no
route an agency calls, no metrics scrape and no per-second sampler may call it."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.routes import operator_history
from app.settings import Settings
from app.store import Store
from tests.contract.test_store_contract import Backend, backend, pg_url  # noqa: F401 - fixtures
from tests.helpers import chunk

AGENCIES = 300


class EveryAgencyRead(AssertionError):
    pass


def forbid_reading_every_agency(store: Store) -> list[str]:
    """``store.agency_stats`` made to fail, and each call recorded."""
    calls: list[str] = []

    def agency_stats(*_args: object, **_kwargs: object) -> None:
        calls.append("agency_stats")
        raise EveryAgencyRead("a per-request read of every agency of the round")

    store.agency_stats = agency_stats  # type: ignore[method-assign]
    return calls


@pytest.fixture
def round_store(backend: Backend) -> Store:
    return backend.make(agencies=AGENCIES)


@pytest.fixture
def client(round_store: Store, tmp_path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "app-data", agencies=AGENCIES)
    # Not entered as a context manager: no lifespan, so no background sampler reads the store.
    yield TestClient(create_app(settings, round_store))


def test_status_answers_the_same_size_with_one_agency_done_or_hundreds(client: TestClient, round_store) -> None:
    round_store.append_chunk(chunk(1, 1))
    round_store.mark_done(1)
    one_done = client.get("/status")
    for agency in range(2, AGENCIES):
        round_store.mark_done(agency)
    many_done = client.get("/status")
    assert one_done.status_code == many_done.status_code == 200
    assert orjson.loads(one_done.content) == {"expected": AGENCIES, "done_count": 1, "drawn": False, "bets": 1}
    assert orjson.loads(many_done.content) == {
        "expected": AGENCIES,
        "done_count": AGENCIES - 1,
        "drawn": False,
        "bets": 1,
    }
    assert len(many_done.content) - len(one_done.content) == len(str(AGENCIES - 1)) - 1  # the count's digits


def test_no_request_of_an_agency_or_a_scrape_reads_every_agency(client: TestClient, round_store) -> None:
    for agency in range(1, AGENCIES, 7):
        round_store.append_chunk(chunk(agency, 1))
        round_store.mark_done(agency)
    calls = forbid_reading_every_agency(round_store)
    asked = {
        "/status": 200,
        "/metrics": 200,
        "/rounds": 200,
        "/rounds/1": 200,
        "/rounds/1/agencies?state=done&limit=5": 200,
        "/rounds/1/agencies?state=pending&limit=5": 200,
        "/agencies/8/uploads": 200,
        "/agencies/8/winners": 425,
        "/health": 200,
    }
    answered = {path: client.get(path).status_code for path in asked}
    assert (answered, calls) == (asked, [])
    scrape = client.get("/metrics").text
    assert f"lottery_agencies_done {len(range(1, AGENCIES, 7))}.0" in scrape


def test_the_ingest_chart_samples_a_round_without_reading_every_agency(client: TestClient, round_store) -> None:
    round_store.append_chunk(chunk(3, 4))
    calls = forbid_reading_every_agency(round_store)
    operator_history.sample(client.app)  # what the worker's sampler does every second
    assert calls == []
    assert [bets for _, bets in client.app.state.ingest_history.points()] == [4]
