"""The agency routes: upload bets, say done, read winners, see an upload's progress.

Handlers are thin: read the request, hand it to ingest and the store (off the event loop,
since both block), shape the answer. Status codes for errors live in app/problems.py.

Each handler takes ``round_id`` (None: the current round) and is served twice by
:func:`agency_router`: at ``/agencies/{agency}/...`` and at ``/rounds/{round}/agencies/{agency}/...``
(app/routes/scope.py). Each takes the token and the agency id as plain parameters and checks
them itself (``deps.check_agency``: token first, then the id in that round), because FastAPI's
dependency solving cost more per chunk than parsing a 5,000-bet body (docs/performance.md);
the handlers whose parameters are all plain text are PlainRoutes (app/routes/plain.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app import metrics
from app.deps import (
    AgencyText,
    CredentialsDep,
    IdempotencyKeyHeader,
    SaltHeader,
    UploadIdHeader,
    UploadOffsetHeader,
    check_agency,
    check_idempotency_key,
    check_salt,
    check_upload_span,
    received_body,
)
from app.draw_watch import Wake
from app.ingest import parse_chunk
from app.limits import client_gone
from app.logs import info_batched
from app.problems import NotDrawnYet, Problem, documented
from app.routes.plain import Handler, PlainRoute
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
from app.routes.scope import at_round
from app.store import Chunk, ChunkReceipt, DataCorrupt, UploadSpan, body_digest
from tlog import b64, leaves

log = logging.getLogger("lottery")


# A body up to this size is parsed on the event loop (about 200 bets: well under a millisecond,
# even on the general path that names every problem); a bigger one in the thread pool, so a
# 5,000-bet chunk never holds up the other connections of the worker.
INLINE_PARSE_BYTES = 8192


def _chunk(
    agency: int,
    body: bytes | bytearray,
    content_type: str | None,
    max_bets: int,
    key: str | None,
    upload: UploadSpan | None,
    salt: bytes | None,
) -> Chunk:
    parsed = parse_chunk(body, content_type, agency, max_bets, only_bets=upload is not None)
    # Kept with the range, so a resumed upload can prove its file still holds these bets.
    digest = body_digest(body) if upload is not None else None
    # The leaf's salted digest is hashed here, before the store's lock (salt None: no log kept).
    return Chunk.build(agency, parsed.payload, parsed.count, key, upload, digest, salt)


async def post_bets(
    request: Request,
    agency: AgencyText,
    credentials: CredentialsDep,
    idempotency_key: IdempotencyKeyHeader = None,
    upload_id: UploadIdHeader = None,
    upload_offset: UploadOffsetHeader = None,
    lottery_salt: SaltHeader = None,
    *,
    round_id: int | None,
) -> Response:
    """Store one chunk of bets, all or nothing. JSON `{"bets": [...]}` or CSV lines.

    - 201: every bet stored. 422: some bet is invalid; each is named by index (and CSV line)
      and field, and none of the chunk is stored.
    - `Idempotency-Key`: a retry stores nothing more and gets the first answer (200 with
      `Idempotent-Replayed: true`), from any worker and after restarts.
    - `Upload-Id` + `Upload-Offset`: the chunk is lines `[offset, offset+count)` of that
      upload; a chunk overlapping stored lines gets 409 with the stored ranges.
    - `log` (where the server keeps the transparency log): the chunk's leaf, its index, the
      salt of its digest (`Lottery-Salt`, or one the server drew) and a signed checkpoint
      that holds it; a replay answers the leaf the chunk got when first stored.
    """
    number = await check_agency(request, agency, credentials, round_id)
    key = check_idempotency_key(idempotency_key)
    upload = check_upload_span(upload_id, upload_offset)
    salt = check_salt(lottery_salt)
    settings, store = request.app.state.settings, request.app.state.store
    try:
        # The body's bytes are held against this worker's budget until its answer is decided.
        async with received_body(request, settings.max_body_bytes) as body:
            # The salt of the leaf's digest: the uploader's, or drawn here (None: this store keeps no log).
            salt = None if store.log is None else salt or leaves.new_salt()
            content_type = request.headers.get("content-type")
            parse = (number, body, content_type, settings.max_bets_per_chunk, key, upload, salt)
            chunk = _chunk(*parse) if len(body) <= INLINE_PARSE_BYTES else await run_in_threadpool(_chunk, *parse)
            del body, parse
            receipt = await store.store_chunk(chunk, round=round_id)
    except ClientDisconnect:
        client_gone("body", number)
        raise Problem(400, "Client disconnected", "the client closed the connection before its body arrived") from None
    except Exception as error:
        metrics.chunk_failed(error)
        motive = type(error).__name__
        info_batched(log, "action: apuesta_recibida | result: fail | agencia: %d | motivo: %s", number, motive)
        if isinstance(error, DataCorrupt):  # the operator's to repair: what and where, in the server's log
            log.error("action: apuesta_recibida | result: fail | agencia: %d | detalle: %s", number, error)
        raise
    metrics.chunk_stored(number, receipt.stored, receipt.replayed)
    if log.isEnabledFor(logging.DEBUG) and not receipt.replayed:  # per-bet work only when asked for
        for row in chunk.rows:
            log.debug("action: apuesta_almacenada | result: success | dni: %s | numero: %d", row[3], row[5])
    info_batched(log, "action: apuesta_recibida | result: success | cantidad: %d", receipt.stored)
    # ChunkStored, written directly: the response model documents it, nothing to validate.
    content = b'{"agency":%d,"stored":%d%s}' % (number, receipt.stored, _log_field(receipt))
    if receipt.replayed:
        return Response(content, 200, {"Idempotent-Replayed": "true"}, "application/json")
    return Response(content, 201, media_type="application/json")


def _log_field(receipt: ChunkReceipt) -> bytes:
    """The receipt's ``,"log":{...}`` (nothing where the backend keeps no log)."""
    found = receipt.log
    if found is None:
        return b""
    shown = {
        "index": found.index,
        "size": found.size,
        "leaf": b64.encode(found.leaf),
        "salt": found.salt,
        "checkpoint": found.checkpoint.decode("utf-8"),
    }
    return b',"log":' + orjson.dumps(shown)


async def post_done(
    request: Request, agency: AgencyText, credentials: CredentialsDep, *, round_id: int | None
) -> DoneState:
    """Idempotent. The call that completes the set of agencies performs the draw before answering."""
    number = await check_agency(request, agency, credentials, round_id)
    receipt = await run_in_threadpool(request.app.state.store.mark_done, number, round=round_id)
    if receipt.drawn:
        request.app.state.draw_watch.probe_now()  # this worker's long polls answer now
    return DoneState(agency=number, done=receipt.done, expected=receipt.expected, drawn=receipt.drawn)


async def get_winners(
    request: Request,
    agency: AgencyText,
    credentials: CredentialsDep,
    wait: Annotated[
        int,
        Query(
            ge=0,
            le=60,
            description=("Long poll: hold the request up to this many seconds and answer as soon as the draw happens"),
        ),
    ] = 0,
    *,
    round_id: int | None,
) -> Winners:
    """425 Too Early (with Retry-After) until the draw; then the documents of this agency's winning bets.

    With `wait`, the answer comes the moment the draw happens (or 425 after `wait` seconds);
    a server that is stopping answers an open poll at once with 503 and Retry-After.
    """
    number = await check_agency(request, agency, credentials, round_id)
    settings, store = request.app.state.settings, request.app.state.store
    if round_id is None and wait:  # a long poll waits for one round's draw, named by its id
        round_id = await run_in_threadpool(store.current_round)
    winners = await run_in_threadpool(store.winners, number, round=round_id)
    if winners is None and wait:
        log.debug("action: consulta_ganadores | result: en_espera | agencia: %d | espera: %d", number, wait)
        woken = await request.app.state.draw_watch.wait(wait, lambda: _client_left(request), round_id)
        if woken is Wake.DISCONNECTED:
            client_gone("long poll", number)
        elif woken is Wake.STOPPING:
            raise Problem(
                503,
                "Server stopping",
                "the server is restarting; ask again shortly",
                headers={"Retry-After": str(settings.retry_after)},
            )
        elif woken is Wake.DRAWN:
            winners = await run_in_threadpool(store.winners, number, round=round_id)
    if winners is None:
        raise NotDrawnYet(settings.retry_after)
    log.info("action: consulta_ganadores | result: success | agencia: %d | cant_ganadores: %d", number, len(winners))
    return Winners(agency=number, winners=winners)


async def _client_left(request: Request) -> None:
    """Returns when the client closes its connection (uvicorn says so on the receive channel)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def get_upload(
    request: Request,
    agency: AgencyText,
    credentials: CredentialsDep,
    upload_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,128}$")],
    *,
    round_id: int | None,
) -> UploadProgress:
    """The stored bet ranges of one upload (see `Upload-Id`), so a rerun sends only the rest.

    `committed` is merged; `spans` are the chunks as stored, each with the SHA-256 of its body
    (LF-normalized), so a rerun can prove its file still holds those bets before sending more.
    """
    number = await check_agency(request, agency, credentials, round_id)
    state = await run_in_threadpool(request.app.state.store.upload_state, number, upload_id, round=round_id)
    return UploadProgress(
        upload_id=state.upload_id,
        committed=state.committed,
        bets=state.bets,
        spans=[
            StoredChunk(start=s.start, end=s.end, digest=s.digest, log_index=s.log_index, salt=s.salt)
            for s in state.spans
        ],
    )


async def list_uploads(
    request: Request, agency: AgencyText, credentials: CredentialsDep, *, round_id: int | None
) -> UploadList:
    """Every upload of this agency with stored bets, in the order each was first stored."""
    number = await check_agency(request, agency, credentials, round_id)
    uploads = await run_in_threadpool(request.app.state.store.uploads, number, round=round_id)
    return UploadList(uploads=[UploadSummary(upload_id=u.upload_id, bets=u.bets, chunks=u.chunks) for u in uploads])


# The routes: (path, endpoint, method, route class, what else add_api_route takes). PlainRoute
# serves a handler whose parameters are all plain text without FastAPI's solving.
ROUTES: list[tuple[str, Callable[..., Awaitable[Any]], str, type[APIRoute], dict[str, Any]]] = [
    (
        "/bets",
        post_bets,
        "POST",
        PlainRoute,
        {
            "status_code": 201,
            "response_model": ChunkStored,
            "summary": "Upload a chunk of bets",
            "openapi_extra": bets_request_body(),
            "responses": {
                200: {
                    "description": (
                        "A replay: this Idempotency-Key or upload range was already stored; nothing more was stored"
                    ),
                    "model": ChunkStored,
                },
                **documented(400, 401, 403, 404, 408, 409, 413, 415, 422, 503),
            },
        },
    ),
    (
        "/done",
        post_done,
        "POST",
        PlainRoute,
        {
            "response_model": DoneState,
            "summary": "Say this agency sent everything",
            "responses": documented(401, 403, 404, 503),
        },
    ),
    (
        "/winners",
        get_winners,
        "GET",
        APIRoute,
        {
            "response_model": Winners,
            "summary": "This agency's winners",
            "responses": documented(401, 403, 404, 422, 425, 503),
        },
    ),
    (
        "/uploads/{upload_id}",
        get_upload,
        "GET",
        APIRoute,
        {
            "response_model": UploadProgress,
            "summary": "Which lines of an upload are stored",
            "responses": documented(401, 403, 404, 422, 503),
        },
    ),
    (
        "/uploads",
        list_uploads,
        "GET",
        PlainRoute,
        {
            "response_model": UploadList,
            "summary": "This agency's uploads in the round",
            "responses": documented(401, 403, 404, 503),
        },
    ),
]


def _prefix(named_round: bool) -> str:
    return "/rounds/{round}/agencies/{agency}" if named_round else "/agencies/{agency}"


def agency_router(*, named_round: bool) -> APIRouter:
    """The agency routes of the current round, or (``named_round``) of the round in the path."""
    router = APIRouter(prefix=_prefix(named_round), tags=["rounds" if named_round else "agencies"])
    for path, endpoint, method, route_class, extra in ROUTES:
        if named_round:
            extra = {
                **extra,
                "summary": f"{extra['summary']} (in a given round)",
                "name": f"round_{endpoint.__name__}",
                "operation_id": f"round_{endpoint.__name__}",
                # another round's bets and done are 409 (naming the current round); an unknown round, 404
                "responses": {**documented(404, *((409,) if method == "POST" else ())), **extra["responses"]},
            }
        served = at_round(endpoint, named=named_round)
        router.add_api_route(path, served, methods=[method], route_class_override=route_class, **extra)
    return router


# Every route here checks the token and the agency id (deps.check_agency): tests/api/test_agency_ids.py
# holds every route of this router to it.
router = agency_router(named_round=False)


def direct_bets() -> list[tuple[str, Handler]]:
    """``POST .../bets`` of both scopes as (path template, handler) for the direct lane
    (app/lane.py): the handler each one's PlainRoute runs, built the same way."""
    routes = []
    for named_round in (False, True):
        path = f"{_prefix(named_round)}/bets"
        route = PlainRoute(path, at_round(post_bets, named=named_round), methods=["POST"], status_code=201)
        routes.append((path, route.get_route_handler()))
    return routes
