"""The transparency log's routes (docs/transparency.md, docs/api.md): its key, checkpoints,
entries and proofs. Thin: the log (app/store/txlog.py) answers; sizes are the signed ones.

Readable with any agency's token or the operator's when tokens are on (as /rounds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.deps import any_token
from app.problems import Problem, documented
from app.store.base import LogView
from app.store.txlog import MAX_ENTRIES, LogRangeError
from tlog import b64


class Entries(BaseModel):
    entries: list[str] = Field(description=f"Leaves start, start+1, ..., base64; at most {MAX_ENTRIES} an answer")


class Hashes(BaseModel):
    hashes: list[str] = Field(description="The proof's hashes, base64 (RFC 9162 §2.1.3, §2.1.4)")


Size = Annotated[int, Query(ge=0, le=2**63 - 1)]

router = APIRouter(prefix="/log", tags=["transparency log"], dependencies=[Depends(any_token)])
TEXT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {}}}}


def _log(request: Request) -> LogView:
    found: LogView | None = request.app.state.store.log
    if found is None:
        raise Problem(501, "Not on this backend", "this server's store keeps no transparency log")
    return found


def _bad_range(error: LogRangeError) -> Problem:
    return Problem(400, "Beyond the log", str(error))


@router.get("/vkey", response_class=PlainTextResponse, responses={**TEXT, **documented(401, 501)})
async def get_vkey(request: Request) -> PlainTextResponse:
    """The log's verifier key: `name+hexkeyid+base64(0x01‖public key)` (what `client verify` trusts)."""
    return PlainTextResponse(_log(request).vkey + "\n")


@router.get(
    "/checkpoint", response_class=PlainTextResponse, responses={**TEXT, **documented(400, 401, 404, 422, 501, 503)}
)
async def get_checkpoint(request: Request, size: Size | None = None) -> PlainTextResponse:
    """The latest signed checkpoint, or the one of tree size `size` (every size a receipt named stays)."""
    log = _log(request)
    try:
        if size is not None:
            current = await run_in_threadpool(log.size)
            if size > current:
                raise LogRangeError(f"size {size} is beyond the log's size {current}")
        note = await run_in_threadpool(log.checkpoint, size)
    except LogRangeError as error:
        raise _bad_range(error) from None
    if note is None:
        raise Problem(
            404, "No such checkpoint", f"no checkpoint of size {size} was signed" if size is not None else "none yet"
        )
    return PlainTextResponse(note.decode("utf-8"))


async def _read(read: Callable[[int, int], list[bytes]], first: int, second: int) -> list[bytes]:
    """A read of the log off the event loop; a size or index it does not have is a 400."""
    try:
        return await run_in_threadpool(read, first, second)
    except LogRangeError as error:
        raise _bad_range(error) from None


@router.get("/entries", response_model=Entries, responses=documented(400, 401, 422, 501, 503))
async def get_entries(request: Request, start: Size, end: Size) -> Entries:
    """Leaves `[start, end)` (end exclusive), at most 1,000: a shorter page means ask again from start+len."""
    found = await _read(_log(request).entries, start, end)
    return Entries(entries=[b64.encode(leaf) for leaf in found])


@router.get("/proof/inclusion", response_model=Hashes, responses=documented(400, 401, 422, 501, 503))
async def get_inclusion(request: Request, index: Size, size: Size) -> Hashes:
    """The inclusion proof of leaf `index` in the tree of `size` leaves."""
    return Hashes(hashes=[b64.encode(h) for h in await _read(_log(request).inclusion_proof, index, size)])


@router.get("/proof/consistency", response_model=Hashes, responses=documented(400, 401, 422, 501, 503))
async def get_consistency(request: Request, old: Size, size: Size) -> Hashes:
    """The consistency proof from the tree of `old` leaves to the tree of `size`."""
    return Hashes(hashes=[b64.encode(h) for h in await _read(_log(request).consistency_proof, old, size)])
