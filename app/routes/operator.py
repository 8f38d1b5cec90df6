"""The operator's page: ``GET /`` shows the round live; ``/operator/state`` and ``/operator/events`` feed it.

The page is a server-rendered shell plus ``/static/operator.js`` (no build step, no CDN).
Its data is counts only: bets, chunks, done, winners *count* per agency (every agency of a
small round; of a large one the first agencies not done yet and the slowest: ``snapshot``);
never a document or a token; and the round's transparency log fields, as ``GET /rounds/{n}``
has them, with the log's head (``operator_log``: a random round's seed only once drawn). With
tokens configured the data needs a bearer token (the operator's, or any agency's), which the
page asks for in a form and keeps in ``sessionStorage``.

Cost: every open page costs one long-lived streamed response. Each worker keeps *one*
snapshot of the round, refreshed at most twice a second from what the store already keeps
in memory or in small tables (``Store.agency_stats``: the ledger index, the chunks table), and
less often as that read grows with the agencies (``REFRESH_COST_RATIO``); every stream of that
worker sends that same snapshot, only when it changed.
"""

from __future__ import annotations

import asyncio
import heapq
import html
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.deps import any_token
from app.domain import MAX_AGENCIES
from app.problems import documented
from app.routes import operator_history, operator_log
from app.store.base import RoundInfo
from app.store.stats import RoundStats

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAST_ROUNDS = 10  # the page lists this many rounds before the current one
TABLE_ROWS = 100  # the page's table: every agency of a round this small, else this many not done yet
SLOWEST = 5  # the agencies not done the page names as the slowest
REFRESH_SECONDS = 0.5  # a snapshot is at most this old (a round small enough): the page updates within a second
# A refresh reads every agency's counts (Store.agency_stats: about 18 ms with 10,000 agencies and
# 276 ms with 100,000, files, docs/operations.md): the next waits this many times its cost, so an open
# page costs a worker at most 1/REFRESH_COST_RATIO of a core whatever the agencies (issue 21).
REFRESH_COST_RATIO = 20
HEARTBEAT_SECONDS = 10.0  # a comment line on a quiet stream, so proxies keep it open
# A stream ends after this long and the page reconnects at once: a server stopping
# gracefully then waits at most this long for open pages.
STREAM_SECONDS = 15.0
# Only this origin: the page loads nothing from anywhere else, and nobody may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["operator"])
# The page and its data: the operator's token or any agency's (with tokens on).
viewer = any_token


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def past_rounds(app: FastAPI, current: int | None = None) -> list[dict[str, Any]]:
    """The rounds before the current one, newest first:
    ``{round, bets, winners, winning_number, opened_at, drawn_at}``.

    Blocking (it reads the store): call it off the event loop.
    """
    store = app.state.store
    before = store.current_round() if current is None else current
    return [
        {
            "round": r.round,
            "bets": r.bets,
            "winners": r.winners,
            "winning_number": r.winning_number,
            "opened_at": r.opened_at,
            "drawn_at": r.drawn_at,
        }
        for r in store.rounds(limit=PAST_ROUNDS, before=before)
    ]


def read_round(app: FastAPI) -> tuple[RoundStats, RoundInfo, list[dict[str, Any]], dict[str, Any]]:
    """The current round's counts, its parameters, the rounds before it and its transparency
    panel's data (blocking: off the event loop)."""
    store = app.state.store
    current = store.current_round()
    stats = store.agency_stats(round=current)
    info = store.round_info(current)  # after the counts: a draw between the two shows its number
    return stats, info, past_rounds(app, current), operator_log.transparency(store.log, info)


def snapshot(stats: RoundStats, info: RoundInfo) -> dict[str, Any]:
    """The page's data: the round's counts, a bounded table of agencies (``table``: ``all`` of a
    round of up to TABLE_ROWS agencies, else the first TABLE_ROWS ``pending``, not done yet), the
    SLOWEST agencies not done (never seen, then the longest since their last chunk), the winning
    number (null: random, until the draw), and the draw's time and winners count once drawn.

    Every open page gets it on every change: a row per agency of a country's round (10,000 or
    100,000) would be a megabyte a second per page (issue 21)."""
    done = set(stats.done)

    def row(agency: int) -> dict[str, Any]:
        return agency_row(stats, done, agency)

    pending = (a for a in range(1, stats.expected + 1) if a not in done)
    everyone = stats.expected <= TABLE_ROWS
    shown = range(1, stats.expected + 1) if everyone else itertools.islice(pending, TABLE_ROWS)
    agencies = [row(a) for a in shown]
    done_count = len(done & set(range(1, stats.expected + 1)))
    drawn = stats.drawn_at is not None
    return {
        "round": info.round,
        "state": "drawn" if drawn else "open",
        "winning_number": info.winning_number,
        "random": info.random,
        "expected": stats.expected,
        "done": done_count,
        "pending": stats.expected - done_count,
        "bets": stats.bets,
        "table": "all" if everyone else "pending",
        "agencies": agencies,
        "slowest": [row(a) for a in slowest(stats, done)],
        "drawn_at": _iso(stats.drawn_at),
        "winners": sum(stats.winners.values()) if stats.winners is not None else None,
    }


def agency_row(stats: RoundStats, done: set[int], agency: int) -> dict[str, Any]:
    """One agency's row of the page's table."""
    seen = stats.agencies.get(agency)
    return {
        "agency": agency,
        "bets": seen.bets if seen else 0,
        "chunks": seen.chunks if seen else 0,
        "last_activity": _iso(seen.last_activity if seen else None),
        "done": agency in done,
        "winners": None if stats.winners is None else stats.winners.get(agency, 0),
    }


def slowest(stats: RoundStats, done: set[int]) -> list[int]:
    """The SLOWEST agencies not done: never seen first, then the longest since their last chunk."""

    def quiet(agency: int) -> tuple[float, int]:
        seen = stats.agencies.get(agency)
        last = seen.last_activity if seen is not None else None
        return (float("-inf") if last is None else last, agency)

    return heapq.nsmallest(SLOWEST, (a for a in range(1, stats.expected + 1) if a not in done), key=quiet)


class Snapshots:
    """This worker's latest snapshot, as JSON bytes, shared by every page it serves."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._data = b""
        self._at = float("-inf")
        self._cost = 0.0  # how long the last refresh took
        self._lock: asyncio.Lock | None = None
        self._read: tuple[int, RoundStats, set[int]] = (0, RoundStats(0, []), set())  # the round, as last read

    async def rows(self, request: Request, after: int, limit: int) -> dict[str, Any]:
        """Agencies after..after+limit of the round as this worker last read it: a page of the
        page's table (its search and pages), costing the page, not the round's agencies."""
        await self.latest(request)
        round_id, stats, done = self._read
        shown = range(after + 1, min(after + limit, stats.expected) + 1)
        return {"round": round_id, "expected": stats.expected, "agencies": [agency_row(stats, done, a) for a in shown]}

    def _fresh(self) -> bool:
        return self.clock() - self._at < max(REFRESH_SECONDS, REFRESH_COST_RATIO * self._cost)

    async def latest(self, request: Request) -> bytes:
        if self._fresh():
            return self._data
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:  # one refresh at a time; the others get its result
            if not self._fresh():
                app = request.app
                started = self.clock()
                stats, info, past, logged = await run_in_threadpool(read_round, app)
                self._cost = self.clock() - started
                metrics.set_round_state(info.round, len(stats.done))
                self._read = (info.round, stats, set(stats.done))
                history = app.state.ingest_history
                history.observe(info.round, stats.bets, stats.drawn_at is not None)
                data = {**snapshot(stats, info), **logged, "past_rounds": past, "ingest": history.points()}
                self._data, self._at = orjson.dumps(data), self.clock()
        return self._data


def _snapshots(request: Request) -> Snapshots:
    snapshots: Snapshots = request.app.state.operator_snapshots
    return snapshots


@router.get("/", include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    """The page's shell. Without tokens it carries the first snapshot, so it shows data at once."""
    initial = b"null"
    if request.app.state.tokens is None:
        initial = await _snapshots(request).latest(request)
    body = PAGE.format(
        title=html.escape(request.app.title),
        auth="required" if request.app.state.tokens is not None else "open",
        # In a JSON script block only "</" could end the block early; orjson never writes it escaped.
        initial=initial.decode().replace("</", "<\\/"),
    )
    return HTMLResponse(body, headers=SECURITY_HEADERS)


@router.get(
    "/operator/state",
    summary="The round, for the operator's page",
    dependencies=[Depends(viewer)],
    responses=documented(401, 503),
)
async def state(request: Request) -> Response:
    """Counts only: per agency its bets, chunks, last activity and done; after the draw, its winners count."""
    return Response(await _snapshots(request).latest(request), media_type="application/json", headers=SECURITY_HEADERS)


@router.get(
    "/operator/agencies",
    summary="Agencies' rows for the operator's page, a page at a time",
    dependencies=[Depends(viewer)],
    responses=documented(401, 422, 503),
)
async def agencies(
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_AGENCIES, description="Rows of the agencies above this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=TABLE_ROWS)] = TABLE_ROWS,
) -> Response:
    """Counts only, as ``/operator/state``'s table, for agencies ``after``+1 to ``after``+``limit``."""
    rows = await _snapshots(request).rows(request, after, limit)
    return Response(orjson.dumps(rows), media_type="application/json", headers=SECURITY_HEADERS)


# Not in the OpenAPI schema: a page-internal stream (fuzzers would wait out every one).
@router.get("/operator/events", dependencies=[Depends(viewer)], include_in_schema=False)
async def events(request: Request) -> StreamingResponse:
    """`data: <the state's JSON>` whenever it changes (checked twice a second); ends after a while: reconnect."""
    hub = _snapshots(request)
    first = await hub.latest(request)  # a storage error is a 503 problem here, before the stream starts

    async def stream() -> AsyncIterator[bytes]:
        sent, started = first, time.monotonic()
        quiet_since = started
        yield b"retry: 1000\n\ndata: " + first + b"\n\n"
        while time.monotonic() - started < STREAM_SECONDS:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                data = await hub.latest(request)
            except Exception:  # storage down mid-stream: end it; the page reconnects and sees the 503
                return
            if data != sent:
                sent, quiet_since = data, time.monotonic()
                yield b"data: " + data + b"\n\n"
            elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                quiet_since = time.monotonic()
                yield b": quiet\n\n"

    headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}  # nginx: pass each event on at once
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def install(app: FastAPI) -> None:
    """The page, its data routes and its static files (``/static``, from app/static)."""
    app.state.operator_snapshots = Snapshots()
    operator_history.install(app)  # the ingest chart's history, sampled by each worker
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    try:
        metrics.ROUND.set(app.state.store.current_round())
    except Exception:  # the storage is down at start: the first scrape sets it  # noqa: BLE001
        metrics.ROUND.set(1)  # what a fresh data dir or database starts with


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Round · {title}</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/operator.css">
<script src="/static/transparency.js" defer></script>
<script src="/static/operator.js" defer></script>
</head>
<body data-auth="{auth}">
<header>
  <h1>Lotería Nacional <span class="muted">· operator</span></h1>
  <nav><a href="/docs">API docs</a> · <a href="/redoc">ReDoc</a> · <a href="/metrics">metrics</a></nav>
</header>
<main>
  <form id="login" hidden>
    <p>This server needs a token to show the round: the operator's token (or an agency's).
    The operator's token is the file <code>secrets/operator.token</code>, made with the agencies'
    by <code>python -m app.tokens --agencies N --out secrets</code> (its tokens.json is the
    server's LOTTERY_TOKENS_FILE). It stays in this browser tab only (session storage).</p>
    <label>Token <input id="token" type="password" autocomplete="off" required></label>
    <button type="submit">Show the round</button>
    <p id="login-error" class="error" role="alert"></p>
  </form>
  <div id="round" hidden>
    <section class="summary">
      <h2>Round <span id="round-id"></span>: <span id="round-state" data-testid="round-state"></span></h2>
      <p>Winning number <strong id="winning-number" data-testid="winning-number"></strong></p>
      <p><span id="total-bets" data-testid="total-bets">0</span> bets stored ·
         <span id="done-count" data-testid="done-count">0</span> of <span id="expected"></span> agencies done
         <span id="connection" class="muted"></span></p>
      <div class="bar" role="progressbar" aria-valuemin="0" id="progress"><div id="progress-fill"></div></div>
      <p id="draw" data-testid="draw" hidden></p>
    </section>
    <section>
      <h2>Slowest agencies <span class="muted">(not done: nothing stored yet, then the longest quiet)</span></h2>
      <ol id="slowest" data-testid="slowest"></ol>
      <p id="slowest-none" class="muted" hidden>Every agency is done.</p>
    </section>
    <section>
      <h2>Agencies</h2>
      <form id="find" class="controls" hidden>
        <label>Agency <input id="find-agency" type="number" min="1" inputmode="numeric"></label>
        <button type="submit">Show</button>
        <button type="button" id="page-prev">&larr; Previous</button>
        <button type="button" id="page-next">Next &rarr;</button>
        <button type="button" id="page-pending">Not done yet</button>
      </form>
      <p id="table-note" class="muted" data-testid="table-note"></p>
      <table id="agencies">
        <thead><tr><th>Agency</th><th>Bets</th><th>Chunks</th><th>Last activity</th><th>Done</th>
        <th>Winners</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section>
      <h2>Ingest rate <span class="muted">(bets per second, up to the last 5 minutes, as the server saw it)</span></h2>
      <div class="chart">
        <span class="axis" id="rate-peak"></span>
        <svg id="rate" viewBox="0 0 600 120" preserveAspectRatio="none" role="img" aria-label="ingest rate"></svg>
        <div class="axis x"><span id="rate-from"></span><span>now</span></div>
      </div>
      <p class="muted" id="rate-now"></p>
    </section>
    <section id="transparency" data-testid="transparency">
      <h2>Transparency <span class="muted">(this round in the signed log: what anyone can check)</span></h2>
      <p id="tlog-none" data-testid="tlog-none" hidden>This server keeps no transparency log:
      neither this round's bets nor its number can be checked against a signed log.</p>
      <div id="tlog" hidden>
        <dl id="tlog-facts" class="facts"></dl>
        <p id="tlog-note" data-testid="tlog-note"></p>
        <div id="proof" data-testid="proof" hidden>
          <p id="proof-verdict" data-testid="proof-verdict" role="status"></p>
          <ol id="proof-steps"></ol>
        </div>
        <p class="muted">What an agency runs to check its bets and this round against the log, trusting
        only the key (A: its id; F: its bets file, its receipts beside it; <code>--server</code> and
        <code>--token</code> as for <code>run</code>):</p>
        <pre><code id="tlog-command" data-testid="tlog-command"></code></pre>
      </div>
    </section>
    <section>
      <h2>Past rounds</h2>
      <div id="past"></div>
    </section>
  </div>
</main>
<script type="application/json" id="initial">{initial}</script>
</body>
</html>
"""
