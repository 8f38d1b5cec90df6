"""Rounds over time: list them, read one, open the next (the operator), and every agency route
scoped to a round (``/rounds/{round}/agencies/{agency}/...``).

The round-scoped agency routes are the handlers of app/routes/agencies.py, served a second
time under this prefix (``agencies.agency_router``): the round comes to each handler from the
path, parsed by the round's rule. The rules themselves are in app/rounds.py; the store keeps
the rounds.

``POST /rounds`` reads its body itself, after the operator's token was checked (FastAPI reads
a declared body before any dependency runs: a 300 MB body without a token was read whole).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.deps import RoundText, StoreDep, any_token, operator_token, received_body
from app.domain import MAX_AGENCIES
from app.problems import Problem, documented
from app.rounds import parse_round_id
from app.routes import agencies
from app.store import RoundInfo
from tlog import b64

PAGE_SIZE = 20
AGENCY_PAGE_SIZE = 100  # GET /rounds/{round}/agencies: default and most ids a page
MAX_AGENCY_PAGE = 1000
ROUND_BODY_LIMIT = 4096  # a round's parameters are a few dozen bytes of JSON

operator = operator_token  # opening a round is the operator's act (app/deps.py)
viewer = any_token  # reading rounds: the operator's token or any agency's, as the operator's page


class RoundLogOut(BaseModel):
    opened: int | None = Field(examples=[0], description="Index of the round's round-opened leaf in the log")
    closed: int | None = Field(examples=[None], description="Index of its round-closed leaf, once drawn")


class RoundDrawOut(BaseModel):
    seed: str | None = Field(
        examples=[None], description="The committed seed (base64), published at the draw; null for a fixed number"
    )
    size: int = Field(examples=[42], description="The log's tree size with the close leaf in (closed + 1)")
    root: str = Field(description="That tree's root (base64); a checkpoint of that size is signed")
    winning_number: int = Field(examples=[7574])


class RoundOut(BaseModel):
    round: int = Field(examples=[2])
    state: Literal["open", "drawn"] = Field(examples=["open"])
    agencies: int = Field(examples=[5], description="Agencies of this round: ids 1..N")
    winning_number: int | None = Field(
        examples=[7574], description="The round's winning number; null in a random round until its draw"
    )
    random: bool = Field(examples=[False], description="Opened with a random winning number, drawn at the draw")
    done_count: int = Field(
        examples=[2], description="How many agencies are done; which: GET /rounds/{round}/agencies?state=done"
    )
    bets: int = Field(examples=[26936])
    winners: int | None = Field(examples=[None], description="How many bets won, once drawn")
    opened_at: str | None = Field(examples=["2026-11-27T10:00:00+00:00"])
    drawn_at: str | None = Field(examples=[None])
    log: RoundLogOut | None = Field(
        None, description="The round's leaves in the transparency log (null where the backend keeps none)"
    )
    seed_commitment: str | None = Field(
        None,
        description=(
            'A random round\'s seed commitment, base64 SHA-256("lottery/seed/v1\\n" ‖ seed), published when it '
            "opened; null for a fixed number (only the bets of such a round are provable, not its number)"
        ),
    )
    draw: RoundDrawOut | None = Field(
        None, description="After the draw: what its number comes from (docs/transparency.md, the committed draw)"
    )

    @classmethod
    def of(cls, info: RoundInfo) -> RoundOut:
        found = info.log
        draw = None
        if found is not None and found.draw is not None and info.winning_number is not None:
            seed = None if found.draw.seed is None else b64.encode(found.draw.seed)
            draw = RoundDrawOut(
                seed=seed, size=found.draw.size, root=b64.encode(found.draw.root), winning_number=info.winning_number
            )
        return cls(
            round=info.round,
            state="drawn" if info.drawn else "open",
            agencies=info.agencies,
            winning_number=info.winning_number,
            random=info.random,
            done_count=info.done_count,
            bets=info.bets,
            winners=info.winners,
            opened_at=info.opened_at,
            drawn_at=info.drawn_at,
            log=None if found is None else RoundLogOut(opened=found.opened, closed=found.closed),
            seed_commitment=None
            if found is None or found.seed_commitment is None
            else b64.encode(found.seed_commitment),
            draw=draw,
        )


class RoundList(BaseModel):
    rounds: list[RoundOut]
    next: str | None = Field(examples=["/rounds?before=3&limit=20"], description="The next page, older rounds")


class AgencyPage(BaseModel):
    round: int = Field(examples=[2])
    state: Literal["done", "pending"] = Field(examples=["pending"])
    agencies: list[int] = Field(examples=[[2, 4, 5]], description="Agency ids, ascending")
    next: str | None = Field(
        examples=["/rounds/2/agencies?state=pending&after=5&limit=3"], description="The next page, higher ids"
    )


class RoundOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agencies: int | None = Field(None, ge=1, le=MAX_AGENCIES, description="Default: LOTTERY_AGENCIES", examples=[5])
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
async def get_round(store: StoreDep, round: RoundText) -> RoundOut:
    """One round: its state (`open`/`drawn`), agencies, winning number, done agencies, bets, winners count, times."""
    return RoundOut.of(await run_in_threadpool(store.round_info, parse_round_id(round)))


@router.get(
    "/rounds/{round}/agencies",
    response_model=AgencyPage,
    dependencies=[Depends(viewer)],
    responses=documented(401, 404, 422, 503),
)
async def list_agencies(
    store: StoreDep,
    round: RoundText,
    state: Annotated[Literal["done", "pending"], Query(description="Done agencies, or the ones not done yet")],
    after: Annotated[int, Query(ge=0, le=MAX_AGENCIES, description="Only agencies above this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_AGENCY_PAGE)] = AGENCY_PAGE_SIZE,
) -> AgencyPage:
    """A round's done (or pending) agencies, ascending, ``limit`` at a time; ``next`` links the rest.
    A page costs its ``limit``, not the round's agencies (pending: plus the done ones it skips)."""
    round_id = parse_round_id(round)
    read = store.done_agencies if state == "done" else store.pending_agencies
    found = await run_in_threadpool(read, after, limit + 1, round_id)
    page = found[:limit]
    more = f"/rounds/{round_id}/agencies?state={state}&after={page[-1]}&limit={limit}" if len(found) > limit else None
    return AgencyPage(round=round_id, state=state, agencies=page, next=more)


@router.post(
    "/rounds",
    status_code=201,
    response_model=RoundOut,
    dependencies=[Depends(operator)],
    responses=documented(400, 401, 403, 409, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": RoundOpen.model_json_schema(ref_template="{model}")}},
        }
    },
)
async def open_round(request: Request, store: StoreDep) -> RoundOut:
    """Open the next round (409 while the current one is not drawn). Absent fields take the settings."""
    async with received_body(request, ROUND_BODY_LIMIT) as raw:
        body = round_opening(bytes(raw), request.headers.get("content-type"))
    opened = await run_in_threadpool(store.open_round, body.agencies, body.winning_number)
    metrics.set_round_state(opened.round, 0)
    return RoundOut.of(opened)


def round_opening(raw: bytes, content_type: str | None) -> RoundOpen:
    """The body of ``POST /rounds``: none, or a JSON object of RoundOpen's fields."""
    if not raw.strip():
        return RoundOpen()
    if content_type is not None and content_type.split(";")[0].strip().lower() != "application/json":
        raise Problem(415, "Unsupported media type", "the round's parameters are sent as application/json")
    try:
        return RoundOpen.model_validate_json(raw)
    except ValidationError as error:  # the same 422 FastAPI gives a body it checks
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(agencies.agency_router(named_round=True))
