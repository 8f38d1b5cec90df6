"""Routes about the round as a whole, and liveness."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from app.deps import StoreDep, any_token
from app.problems import documented
from app.routes.schemas import Health, RoundState

router = APIRouter(tags=["round"])


@router.get(
    "/status",
    response_model=RoundState,
    summary="Round state",
    responses=documented(401, 503),
    dependencies=[Depends(any_token)],
)
async def get_status(store: StoreDep) -> Response:
    """Expected agencies, how many are done, whether the draw happened, and bets stored.

    Which agencies are done: ``GET /rounds/{round}/agencies?state=done``, a page at a time.
    With tokens on, any agency's token is needed: the round's progress is not public."""
    status = await run_in_threadpool(store.status)
    body = {"expected": status.expected, "done_count": status.done_count, "drawn": status.drawn, "bets": status.bets}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/health", response_model=Health, summary="Liveness", responses=documented(503))
async def get_health(store: StoreDep) -> Health:
    """200 when this worker runs and the storage takes writes; 503 otherwise."""
    await run_in_threadpool(store.check_health)
    return Health(status="ok")
