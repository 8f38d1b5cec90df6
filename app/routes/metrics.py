"""``GET /metrics``: Prometheus text format, the sum of every worker (see app/metrics.py).

Open like ``/health``: aggregates only (counts per agency and outcome, durations), never a
document or a token. Restrict it at the proxy when the server faces the internet.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.store import RoundError, Store, StoreError

router = APIRouter(tags=["round"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}}},
    response_class=Response,
)
async def get_metrics(request: Request) -> Response:
    """Counters and histograms of every worker process, and the round's gauges, read fresh from the store."""
    try:
        current, done = await run_in_threadpool(_round_state, request.app.state.store)
        metrics.set_round_state(current, done)
    except (StoreError, RoundError):
        pass  # storage down: the counters matter most now; the gauges keep their last values
    return Response(await run_in_threadpool(metrics.render), media_type=metrics.CONTENT_TYPE)


def _round_state(store: Store) -> tuple[int, int]:
    """The current round and its done count, asked of the store at each scrape: another worker
    may have opened a round since. The count as kept, never the agencies listed (issue 21):
    a stat or two for files, one query for PostgreSQL; a scrape never draws."""
    current = store.current_round()
    return current, store.status(draw=False, round=current).done_count
