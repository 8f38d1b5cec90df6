"""Request dependencies: the store and settings of this app, a checked agency id, the body.

Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def``
dependency in the thread pool, a round trip per dependency per request that cost more
than parsing the bets (measured with py-spy under `make bench`).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.problems import BodyTimeout, BodyTooLarge, Forbidden, Problem, Unauthorized, UnknownAgency
from app.settings import Settings
from app.store import Store, UploadSpan

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as a bare or quoted sf-string
_UPLOAD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]


async def agency_id(
    agency: Annotated[int, Path(description="Agency id, 1..N", examples=[1])], request: Request, store: StoreDep
) -> int:
    # The round's agencies (the current round's on /agencies/...): rounds may differ in size.
    agencies = round_agencies(store, requested_round(request), agency)
    if agencies is not None and not 1 <= agency <= agencies:
        raise UnknownAgency(f"agency {agency} does not exist: agencies are 1 to {agencies}")
    return agency


AgencyDep = Annotated[int, Depends(agency_id)]

# auto_error=False: a missing header is our 401 problem, not FastAPI's 403. Declaring the
# scheme also gives the docs page its Authorize button.
_bearer = HTTPBearer(auto_error=False, description="The agency's token, when the server has LOTTERY_TOKENS_FILE")


async def authorize(
    agency: AgencyDep, request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """With tokens configured: 401 without a valid token, 403 with another agency's token."""
    tokens = request.app.state.tokens
    if tokens is None:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    owner = tokens.owner(credentials.credentials)
    if owner is None:
        raise Unauthorized("the bearer token is not valid")
    if owner != agency:
        raise Forbidden(f"this token belongs to another agency, not to agency {agency}")


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Optional, 1-255 visible ASCII characters. A retry with the same key stores nothing "
                "more and gets the original answer; the same key with other bets gets 422."
            ),
        ),
    ] = None,
) -> str | None:
    if key is None:
        return None
    if len(key) >= 2 and key[0] == key[-1] == '"':  # the IETF draft sends it as a quoted string
        key = key[1:-1]
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise Problem(400, "Bad Idempotency-Key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    return key


async def upload_span(
    upload_id: Annotated[
        str | None,
        Header(
            alias="Upload-Id",
            description=("Optional: names one file being uploaded (e.g. a hash of it), 1-128 of A-Z a-z 0-9 . _ : -"),
        ),
    ] = None,
    upload_offset: Annotated[
        str | None,
        Header(
            alias="Upload-Offset",
            description=("With Upload-Id: index (0-based) of this chunk's first bet in that file."),
        ),
    ] = None,
) -> UploadSpan | None:
    if upload_id is None and upload_offset is None:
        return None
    if upload_id is None or upload_offset is None:
        raise Problem(400, "Bad upload headers", "Upload-Id and Upload-Offset go together")
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise Problem(400, "Bad upload headers", "Upload-Id must be 1 to 128 of A-Z a-z 0-9 . _ : -")
    if not upload_offset.isascii() or not upload_offset.isdigit() or len(upload_offset) > 12:
        raise Problem(400, "Bad upload headers", "Upload-Offset must be a whole number of lines, 0 or more")
    return UploadSpan(upload_id, int(upload_offset))


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass ``limit`` bytes.

    A declared Content-Length over the limit is refused before a byte is read; a chunked
    body is counted as it arrives and dropped the moment it goes over. A client that
    trickles its body gets 408 after ``timeout`` seconds instead of holding a slot forever.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for part in request.stream():
                size += len(part)
                if size > limit:
                    raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
                parts.append(part)
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout:g} seconds") from None
    return b"".join(parts)


# -- rounds (issue 11) ----------------------------------------------------------------------------


def requested_round(request: Request) -> int | None:
    """The round of a ``/rounds/{round}/...`` route, None on the routes of the current round.
    (The path parameter itself is declared and validated by the rounds router.)"""
    value = request.path_params.get("round")
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


RoundDep = Annotated[int | None, Depends(requested_round)]


def round_agencies(store: Store, round_id: int | None, agency: int) -> int | None:
    """How many agencies the round has, without asking the storage again when the answer is
    already known (a round never changes its agencies); None for a round that does not exist
    (the route answers for it: 404 for a read, 409 naming the current round for a write)."""
    from app.store import RoundNotFound  # noqa: PLC0415 - keeps this hunk apart from the module's imports

    try:
        agencies = store.round_agencies(round_id)
        if not 1 <= agency <= agencies:  # maybe a round opened since: ask once more
            agencies = store.round_agencies(round_id, fresh=True)
    except RoundNotFound:
        return None
    return agencies
