"""The agency routes: upload bets, say done, read winners, see an upload's progress.

Handlers are thin: read the request, hand it to ingest and the store (off the event loop,
since both block), shape the answer. Status codes for errors live in app/problems.py.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app import metrics
from app.deps import (
    AgencyDep,
    AgencyText,
    CredentialsDep,
    IdempotencyKeyHeader,
    RoundDep,
    SettingsDep,
    StoreDep,
    UploadIdHeader,
    UploadOffsetHeader,
    check_agency,
    check_idempotency_key,
    check_upload_span,
    declared_length,
    read_body,
    requested_round,
)
from app.draw_watch import Wake
from app.ingest import parse_chunk
from app.limits import client_gone
from app.problems import NotDrawnYet, Problem, documented
from app.routes.plain import PlainRoute
from app.routes.schemas import (
    ChunkStored,
    DoneState,
    StoredChunk,
    UploadList,
    UploadProgress,
    UploadSummary,
    Winners,
    bets_request_body,
)
from app.store import Chunk, ChunkReceipt, Store, UploadSpan, body_digest

log = logging.getLogger("lottery")
# Every route here takes the agency id through app/deps.py (token first, then the id):
# tests/api/test_agency_ids.py holds every route of this router to it.
router = APIRouter(prefix="/agencies/{agency}", tags=["agencies"])


def _receive(
    store: Store,
    agency: int,
    body: bytes,
    content_type: str | None,
    max_bets: int,
    key: str | None,
    upload: UploadSpan | None,
    round_id: int | None = None,
) -> ChunkReceipt:
    parsed = parse_chunk(body, content_type, agency, max_bets, only_bets=upload is not None)
    # Kept with the range, so a resumed upload can prove its file still holds these bets.
    digest = body_digest(body) if upload is not None else None
    chunk = Chunk.build(agency, parsed.payload, parsed.count, key, upload, digest)
    receipt = store.append_chunk(chunk, round=round_id)
    if log.isEnabledFor(logging.DEBUG) and not receipt.replayed:  # per-bet work only when asked for
        for row in chunk.rows:
            log.debug("action: apuesta_almacenada | result: success | dni: %s | numero: %d", row[3], row[5])
    return receipt


async def post_bets(
    request: Request,
    agency: AgencyText,
    credentials: CredentialsDep,
    idempotency_key: IdempotencyKeyHeader = None,
    upload_id: UploadIdHeader = None,
    upload_offset: UploadOffsetHeader = None,
) -> Response:
    """Store one chunk of bets, all or nothing. JSON `{"bets": [...]}` or CSV lines.

    - 201: every bet stored. 422: some bet is invalid; each is named by index (and CSV line)
      and field, and none of the chunk is stored.
    - `Idempotency-Key`: a retry stores nothing more and gets the first answer (200 with
      `Idempotent-Replayed: true`), from any worker and after restarts.
    - `Upload-Id` + `Upload-Offset`: the chunk is lines `[offset, offset+count)` of that
      upload; a chunk overlapping stored lines gets 409 with the stored ranges.
    """
    # The hot path: plain parameters checked by the same functions the other routes'
    # dependencies call, because FastAPI's dependency solving cost more per chunk than
    # parsing a 5,000-bet body (docs/performance.md).
    number = check_agency(request, agency, credentials)
    key = check_idempotency_key(idempotency_key)
    upload = check_upload_span(upload_id, upload_offset)
    round_id = requested_round(request)
    settings, store = request.app.state.settings, request.app.state.store
    try:
        declared = declared_length(request, settings.max_body_bytes)
        # The body's bytes are held against this worker's budget until its answer is decided.
        async with request.app.state.body_budget.reserve(declared or 0) as held:
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout, declared, held)
            content_type = request.headers.get("content-type")
            receipt = await run_in_threadpool(
                _receive, store, number, body, content_type, settings.max_bets_per_chunk, key, upload, round_id
            )
            del body
    except ClientDisconnect:
        client_gone("body", number)
        raise Problem(400, "Client disconnected", "the client closed the connection before its body arrived") from None
    except Exception as error:
        metrics.chunk_failed(error)
        log.info("action: apuesta_recibida | result: fail | agencia: %d | motivo: %s", number, type(error).__name__)
        raise
    metrics.chunk_stored(number, receipt.stored, receipt.replayed)
    log.info("action: apuesta_recibida | result: success | cantidad: %d", receipt.stored)
    # ChunkStored, written directly: the response model documents it, nothing to validate.
    content = b'{"agency":%d,"stored":%d}' % (number, receipt.stored)
    if receipt.replayed:
        return Response(content, 200, {"Idempotent-Replayed": "true"}, "application/json")
    return Response(content, 201, media_type="application/json")


# Registered as a PlainRoute: its parameters are plain text, checked above (app/routes/plain.py).
router.add_api_route(
    "/bets",
    post_bets,
    methods=["POST"],
    status_code=201,
    response_model=ChunkStored,
    summary="Upload a chunk of bets",
    openapi_extra=bets_request_body(),
    responses={
        200: {
            "description": "A replay: this Idempotency-Key or upload range was already stored; nothing more was stored",
            "model": ChunkStored,
        },
        **documented(400, 401, 403, 404, 408, 409, 413, 415, 422, 503),
    },
    route_class_override=PlainRoute,
)


@router.post(
    "/done",
    response_model=DoneState,
    summary="Say this agency sent everything",
    responses=documented(401, 403, 404, 422, 503),
)
async def post_done(agency: AgencyDep, request: Request, store: StoreDep, round_id: RoundDep) -> DoneState:
    """Idempotent. The call that completes the set of agencies performs the draw before answering."""
    receipt = await run_in_threadpool(store.mark_done, agency, round=round_id)
    if receipt.drawn:
        request.app.state.draw_watch.probe_now()  # this worker's long polls answer now
    return DoneState(agency=agency, done=receipt.done, expected=receipt.expected, drawn=receipt.drawn)


@router.get(
    "/winners",
    response_model=Winners,
    summary="This agency's winners",
    responses=documented(401, 403, 404, 422, 425, 503),
)
async def get_winners(
    agency: AgencyDep,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=60,
            description=("Long poll: hold the request up to this many seconds and answer as soon as the draw happens"),
        ),
    ] = 0,
    round_id: RoundDep = None,
) -> Winners:
    """425 Too Early (with Retry-After) until the draw; then the documents of this agency's winning bets.

    With `wait`, the answer comes the moment the draw happens (or 425 after `wait` seconds);
    a server that is stopping answers an open poll at once with 503 and Retry-After.
    """
    if round_id is None and wait:  # a long poll waits for one round's draw, named by its id
        round_id = await run_in_threadpool(store.current_round)
    winners = await run_in_threadpool(store.winners, agency, round=round_id)
    if winners is None and wait:
        log.debug("action: consulta_ganadores | result: en_espera | agencia: %d | espera: %d", agency, wait)
        woken = await request.app.state.draw_watch.wait(wait, lambda: _client_left(request), round_id)
        if woken is Wake.DISCONNECTED:
            client_gone("long poll", agency)
        elif woken is Wake.STOPPING:
            raise Problem(
                503,
                "Server stopping",
                "the server is restarting; ask again shortly",
                headers={"Retry-After": str(settings.retry_after)},
            )
        elif woken is Wake.DRAWN:
            winners = await run_in_threadpool(store.winners, agency, round=round_id)
    if winners is None:
        raise NotDrawnYet(settings.retry_after)
    log.info("action: consulta_ganadores | result: success | agencia: %d | cant_ganadores: %d", agency, len(winners))
    return Winners(agency=agency, winners=winners)


async def _client_left(request: Request) -> None:
    """Returns when the client closes its connection (uvicorn says so on the receive channel)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get(
    "/uploads/{upload_id}",
    response_model=UploadProgress,
    summary="Which lines of an upload are stored",
    responses=documented(401, 403, 404, 422, 503),
)
async def get_upload(
    agency: AgencyDep,
    store: StoreDep,
    upload_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,128}$")],
    round_id: RoundDep,
) -> UploadProgress:
    """The stored bet ranges of one upload (see `Upload-Id`), so a rerun sends only the rest.

    `committed` is merged; `spans` are the chunks as stored, each with the SHA-256 of its body
    (LF-normalized), so a rerun can prove its file still holds those bets before sending more.
    """
    state = await run_in_threadpool(store.upload_state, agency, upload_id, round=round_id)
    return UploadProgress(
        upload_id=state.upload_id,
        committed=state.committed,
        bets=state.bets,
        spans=[StoredChunk(start=s.start, end=s.end, digest=s.digest) for s in state.spans],
    )


@router.get(
    "/uploads",
    response_model=UploadList,
    summary="This agency's uploads in the round",
    responses=documented(401, 403, 404, 422, 503),
)
async def list_uploads(agency: AgencyDep, store: StoreDep, round_id: RoundDep) -> UploadList:
    """Every upload of this agency with stored bets, in the order each was first stored."""
    uploads = await run_in_threadpool(store.uploads, agency, round=round_id)
    return UploadList(uploads=[UploadSummary(upload_id=u.upload_id, bets=u.bets, chunks=u.chunks) for u in uploads])
