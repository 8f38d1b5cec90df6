"""Long polls learn of the draw from the worker's watcher (app/draw_watch.py): at once in the
worker that drew, within a tick in the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.draw_watch import DrawWatch, Wake
from app.main import create_app
from app.settings import Settings


class _Store:
    """Answers "drawn yet?" as told, and says when it was first asked."""

    def __init__(self) -> None:
        self.drawn = False
        self.asked = asyncio.Event()

    def winners(self, agency: int, round: int | None = None) -> list[str] | None:  # noqa: A002 - the store's name
        self.asked.set()
        return [] if self.drawn else None

    def draw_marker(self, round_id: int) -> str | None:
        return None  # like PostgreSQL: no file, the watcher asks winners()


@pytest.fixture(autouse=True)
def _fresh_stop_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's shutdown event binds to the first event loop that waits on it: one per test here.
    monkeypatch.setattr("app.draw_watch._stopping", asyncio.Event())


async def _never() -> None:
    await asyncio.Event().wait()


def test_probe_now_wakes_the_polls_without_waiting_for_the_tick() -> None:
    async def scenario() -> Wake:
        store = _Store()
        watch = DrawWatch(store, tick=3600)  # a tick no test would wait for
        poll = asyncio.create_task(watch.wait(30, _never, round_id=1))
        await asyncio.wait_for(store.asked.wait(), 10)  # asked once: not drawn, it now waits for its tick
        store.drawn = True
        watch.probe_now()
        return await asyncio.wait_for(poll, timeout=10)

    assert asyncio.run(scenario()) is Wake.DRAWN


def test_without_probe_now_a_poll_learns_it_at_the_next_tick() -> None:
    async def scenario() -> Wake:
        store = _Store()
        watch = DrawWatch(store, tick=0.01)
        poll = asyncio.create_task(watch.wait(30, _never, round_id=1))
        await asyncio.wait_for(store.asked.wait(), 10)
        store.drawn = True  # another worker drew: only the next probe can tell
        return await asyncio.wait_for(poll, timeout=10)

    assert asyncio.run(scenario()) is Wake.DRAWN


def test_the_done_that_draws_asks_this_workers_watcher_at_once(tmp_path: Path, monkeypatch) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", agencies=2))
    asked: list[str] = []
    monkeypatch.setattr(app.state.draw_watch, "probe_now", lambda: asked.append("probe"))
    with TestClient(app) as client:
        assert client.post("/agencies/1/done").json()["drawn"] is False
        assert asked == []
        assert client.post("/agencies/2/done").json()["drawn"] is True
        assert asked == ["probe"]


class _StoreWithMarker(_Store):
    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker

    def draw_marker(self, round_id: int) -> str:
        return str(self.marker)


def test_a_backend_with_a_draw_marker_is_probed_by_a_stat(tmp_path: Path) -> None:
    async def scenario() -> Wake:
        store = _StoreWithMarker(tmp_path / "winners.json")
        watch = DrawWatch(store, tick=0.01)
        poll = asyncio.create_task(watch.wait(30, _never, round_id=1))
        await asyncio.sleep(0.05)  # a few ticks: the marker is absent, the poll waits
        assert not poll.done()
        store.marker.write_text("{}")
        wake = await asyncio.wait_for(poll, timeout=10)
        assert not store.asked.is_set()  # the store itself was never asked
        return wake

    assert asyncio.run(scenario()) is Wake.DRAWN


def test_the_file_stores_marker_appears_with_the_draw(tmp_path: Path) -> None:
    from app.store.files import FileStore

    store = FileStore(tmp_path / "data", agencies=1, winning_number=7574)
    marker = Path(store.draw_marker(1))
    assert not marker.exists()
    store.mark_done(1)
    assert marker.exists() and store.winners(1) == []
    store.open_round()
    assert not Path(store.draw_marker(2)).exists()
