"""Rounds over time: list them, read one, open the next (the operator), and every agency route
scoped to a round (``/rounds/{round}/agencies/{agency}/...``).

The round-scoped agency routes are the handlers of app/routes/agencies.py, registered a second
time under this prefix: they read the round from the path (``deps.requested_round``), so both
paths run the same code. The rules themselves are in app/rounds.py; the backends keep the rounds.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.deps import StoreDep, operator_token
from app.problems import documented
from app.routes import agencies
from app.routes.operator import viewer
from app.store import RoundInfo

PAGE_SIZE = 20

operator = operator_token  # opening a round is the operator's act (app/deps.py)


async def round_path(round: Annotated[int, Path(ge=1, le=10**9, description="Round id: 1, 2, 3, ...")]) -> int:
    return round


class RoundOut(BaseModel):
    round: int = Field(examples=[2])
    state: Literal["open", "drawn"] = Field(examples=["open"])
    agencies: int = Field(examples=[5], description="Agencies of this round: ids 1..N")
    winning_number: int | None = Field(
        examples=[7574], description="The round's winning number; null in a random round until its draw"
    )
    random: bool = Field(examples=[False], description="Opened with a random winning number, drawn at the draw")
    done: list[int] = Field(examples=[[1, 3]])
    bets: int = Field(examples=[26936])
    winners: int | None = Field(examples=[None], description="How many bets won, once drawn")
    opened_at: str | None = Field(examples=["2026-11-27T10:00:00+00:00"])
    drawn_at: str | None = Field(examples=[None])

    @classmethod
    def of(cls, info: RoundInfo) -> RoundOut:
        return cls(
            round=info.round,
            state="drawn" if info.drawn else "open",
            agencies=info.agencies,
            winning_number=info.winning_number,
            random=info.random,
            done=info.done,
            bets=info.bets,
            winners=info.winners,
            opened_at=info.opened_at,
            drawn_at=info.drawn_at,
        )


class RoundList(BaseModel):
    rounds: list[RoundOut]
    next: str | None = Field(examples=["/rounds?before=3&limit=20"], description="The next page, older rounds")


class RoundOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agencies: int | None = Field(None, ge=1, le=10_000, description="Default: LOTTERY_AGENCIES", examples=[5])
    winning_number: Annotated[int, Field(ge=0, le=9999)] | Literal["random"] | None = Field(
        None, description='A number 0..9999, or "random" (drawn at the draw). Default: LOTTERY_WINNING_NUMBER'
    )


router = APIRouter(tags=["rounds"])


@router.get("/rounds", response_model=RoundList, dependencies=[Depends(viewer)], responses=documented(401, 422, 503))
async def list_rounds(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=100)] = PAGE_SIZE,
    before: Annotated[int | None, Query(ge=1, description="Only rounds older than this one")] = None,
) -> RoundList:
    """The rounds, newest first, ``limit`` at a time; ``next`` links the older ones."""
    found = await run_in_threadpool(store.rounds, limit + 1, before)
    page = found[:limit]
    more = f"/rounds?before={page[-1].round}&limit={limit}" if len(found) > limit else None
    return RoundList(rounds=[RoundOut.of(info) for info in page], next=more)


@router.get(
    "/rounds/{round}", response_model=RoundOut, dependencies=[Depends(viewer)], responses=documented(401, 404, 422, 503)
)
async def get_round(store: StoreDep, round: Annotated[int, Depends(round_path)]) -> RoundOut:
    """One round: its state (`open`/`drawn`), agencies, winning number, done agencies, bets, winners count, times."""
    return RoundOut.of(await run_in_threadpool(store.round_info, round))


@router.post(
    "/rounds",
    status_code=201,
    response_model=RoundOut,
    dependencies=[Depends(operator)],
    responses=documented(400, 401, 403, 409, 422, 503),
)
async def open_round(store: StoreDep, body: Annotated[RoundOpen | None, Body()] = None) -> RoundOut:
    """Open the next round (409 while the current one is not drawn). Absent fields take the settings."""
    body = body or RoundOpen()
    opened = await run_in_threadpool(store.open_round, body.agencies, body.winning_number)
    metrics.set_round_state(opened.round, 0)
    return RoundOut.of(opened)


# The agency routes of a given round: the same handlers as /agencies/{agency}/...
scoped = APIRouter(prefix="/rounds/{round}", tags=["rounds"], dependencies=[Depends(round_path)])
for route in agencies.router.routes:
    assert isinstance(route, APIRoute)
    scoped.add_api_route(
        route.path,
        route.endpoint,
        methods=list(route.methods),
        response_model=route.response_model,
        status_code=route.status_code,
        summary=f"{route.summary} (in a given round)",
        description=route.description,
        # another round's bets and done are 409 (naming the current round); an unknown round, 404
        responses={**documented(404, *((409,) if "POST" in route.methods else ())), **route.responses},
        openapi_extra=route.openapi_extra,
        dependencies=route.dependencies,
        name=f"round_{route.name}",
        operation_id=f"round_{route.name}",
    )


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(scoped)
