"""Request dependencies and checks: the store of this app, tokens, a checked agency id in its round, the body.

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
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from app.domain import MAX_AGENCIES
from app.limits import BODY_RECEIVED, Reservation
from app.problems import BodyTimeout, BodyTooLarge, Forbidden, Problem, Unauthorized, UnknownAgency
from app.rounds import HIGHEST_ROUND, RoundNotFound
from app.store import Store, UploadSpan
from tlog import b64, leaves

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as a bare or quoted sf-string
_UPLOAD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


StoreDep = Annotated[Store, Depends(get_store)]


# auto_error=False: a missing header is our 401 problem, not FastAPI's 403. Declaring the
# scheme also gives the docs page its Authorize button.
_bearer = HTTPBearer(
    auto_error=False, description="An agency's or the operator's token, when the server has LOTTERY_TOKENS_FILE"
)
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

# Agencies are 1..MAX_AGENCIES (LOTTERY_AGENCIES): the digit count bounds the text, never an int() of a huge string.
_MAX_AGENCY_DIGITS = len(str(MAX_AGENCIES))


def presented_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The request's bearer token; None when tokens are off; 401 when there is none."""
    if request.app.state.tokens is None:
        return None
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
    return credentials.credentials


def token_owner(request: Request, credentials: HTTPAuthorizationCredentials | None) -> int | None:
    """The agency whose token came with the request; None when tokens are off; 401 otherwise."""
    token = presented_token(request, credentials)
    if token is None:
        return None
    tokens = request.app.state.tokens
    owner: int | None = tokens.owner(token)
    if owner is None:
        if tokens.is_operator(token):  # valid, but not for an agency's acts
            raise Forbidden("this is the operator's token: an agency's routes take that agency's token")
        raise Unauthorized("the bearer token is not valid")
    return owner


async def any_token(request: Request, credentials: CredentialsDep) -> None:
    """Reads of the round (/status, /rounds, the operator's page): the operator's token or any agency's."""
    token = presented_token(request, credentials)
    if token is not None and not request.app.state.tokens.may_view(token):
        raise Unauthorized("the bearer token is not valid")


async def operator_token(request: Request, credentials: CredentialsDep) -> None:
    """Acts of the operator (opening a round): 401 without a valid token, 403 with an agency's."""
    token = presented_token(request, credentials)
    if token is None:
        return
    tokens = request.app.state.tokens
    if tokens.is_operator(token):
        return
    if tokens.owner(token) is not None:
        raise Forbidden("this is an agency's token: only the operator opens a round")
    raise Unauthorized("the bearer token is not valid")


def canonical_agency(text: str) -> bool:
    return 0 < len(text) <= _MAX_AGENCY_DIGITS and text.isascii() and text.isdigit() and text[0] != "0"


def parse_agency(text: str, agencies: int | None) -> int:
    """The agency named by ``text``: plain ASCII digits without leading zeros, 1..agencies; 404 otherwise.

    ``int()`` alone would also read ``1.0``, ``+1``, `` 1`` or ``1_0`` (as agencies 1 and 10):
    one agency has one name. Leading zeros are refused too, so that ``01`` and ``1`` are
    never two paths (in logs, caches or proxies' rules) to one agency. ``agencies`` None
    (a round that does not exist: its route answers for it) checks the spelling only.
    """
    if not canonical_agency(text) or (agencies is not None and int(text) > agencies):
        shown = text if len(text) <= 20 and text.isprintable() and text.strip() == text else repr(text[:20])
        where = f": agencies are 1 to {agencies}" if agencies is not None else ""
        raise UnknownAgency(f"agency {shown} does not exist{where}")
    return int(text)


# Read as text and checked by parse_agency (404, after the token), not by FastAPI (422, before
# it); the schema still says what it is: a whole number from 1.
AgencyText = Annotated[
    str,
    Path(
        description="Agency id, 1..N, in plain digits",
        examples=[1],
        json_schema_extra={"type": "integer", "minimum": 1},
    ),
]


# A round named in a path: read as text and checked by app.rounds.parse_round_id (404 for any
# other spelling, never another round); the schema says what it is.
RoundText = Annotated[
    str,
    Path(
        description="Round id: 1, 2, 3, ... in plain digits",
        examples=[1],
        json_schema_extra={"type": "integer", "minimum": 1, "maximum": HIGHEST_ROUND},
    ),
]


async def check_agency(
    request: Request, agency: str, credentials: HTTPAuthorizationCredentials | None, round_id: int | None
) -> int:
    """The checked agency id of ``round_id`` (None: the current round); with tokens, only after
    the token is checked.

    Authentication comes first, so a caller without a valid token learns nothing about
    which agencies exist (401 for every id). The round's own agency count (as the store
    recorded it) decides which ids exist, not this process's settings.
    """
    owner = token_owner(request, credentials)
    agencies = await round_agencies(request.app.state.store, round_id, int(agency) if canonical_agency(agency) else 0)
    number = parse_agency(agency, agencies)
    if owner is not None and owner != number:
        raise Forbidden(f"this token belongs to another agency, not to agency {number}")
    return number


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Optional, 1-255 visible ASCII characters. A retry with the same key stores nothing "
            "more and gets the original answer; the same key with other bets gets 422."
        ),
    ),
]
UploadIdHeader = Annotated[
    str | None,
    Header(
        alias="Upload-Id",
        description=("Optional: names one file being uploaded (e.g. a hash of it), 1-128 of A-Z a-z 0-9 . _ : -"),
    ),
]
UploadOffsetHeader = Annotated[
    str | None,
    Header(
        alias="Upload-Offset",
        description=("With Upload-Id: index (0-based) of this chunk's first bet in that file."),
    ),
]


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if len(key) >= 2 and key[0] == key[-1] == '"':  # the IETF draft sends it as a quoted string
        key = key[1:-1]
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise Problem(400, "Bad Idempotency-Key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    return key


SaltHeader = Annotated[
    str | None,
    Header(
        alias="Lottery-Salt",
        description=(
            "Optional: 32 bytes in standard padded base64, the salt of this chunk's digest in the "
            "transparency log (the uploader sends one per upload and keeps it). Absent: the server draws one."
        ),
    ),
]


def check_salt(salt: str | None) -> bytes | None:
    """The header's 32 bytes (400 for any other value); None when absent."""
    if salt is None:
        return None
    try:
        value = b64.decode(salt)
    except ValueError:
        value = b""
    if len(value) != leaves.SALT_SIZE:
        raise Problem(400, "Bad Lottery-Salt", "Lottery-Salt must be 32 bytes in standard padded base64")
    return value


def check_upload_span(upload_id: str | None, upload_offset: str | None) -> UploadSpan | None:
    if upload_id is None and upload_offset is None:
        return None
    if upload_id is None or upload_offset is None:
        raise Problem(400, "Bad upload headers", "Upload-Id and Upload-Offset go together")
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise Problem(400, "Bad upload headers", "Upload-Id must be 1 to 128 of A-Z a-z 0-9 . _ : -")
    if not upload_offset.isascii() or not upload_offset.isdigit() or len(upload_offset) > 12:
        raise Problem(400, "Bad upload headers", "Upload-Offset must be a whole number of lines, 0 or more")
    return UploadSpan(upload_id, int(upload_offset))


class received_body:  # noqa: N801 - used as ``async with received_body(...)``, like a function
    """The request's body, read only now (every route with a body reads it through here, after
    its token was checked): 413 past ``limit``, 408 past the body deadline, and held against
    this worker's body budget until the block ends (app/limits.py). A class, not a generator
    made into a context manager: one per request, and a one-bet POST is a request (issue 22)."""

    __slots__ = ("request", "limit", "held")

    def __init__(self, request: Request, limit: int):
        self.request, self.limit = request, limit

    async def __aenter__(self) -> bytearray:
        request = self.request
        declared = declared_length(request, self.limit)
        state = request.app.state
        held = self.held = state.body_budget.reserve(declared or 0)
        await held.__aenter__()
        try:
            return await read_body(request, self.limit, state.settings.body_timeout, declared, held)
        except BaseException:
            await held.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self.held.__aexit__(*exc_info)


def declared_length(request: Request, limit: int) -> int | None:
    """The body's Content-Length, or None (chunked); 413 at once when it is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isascii() or not declared.isdigit():
        return None  # uvicorn's parser has already refused a malformed Content-Length
    if int(declared) > limit:
        raise BodyTooLarge(f"the body is {declared} bytes; the limit is {limit} bytes")
    return int(declared)


async def read_body(request: Request, limit: int, timeout: float, declared: int | None, held: Reservation) -> bytearray:
    """The request body, refused with 413 as soon as it is known to pass ``limit`` bytes.

    A body with a Content-Length is read into one buffer of that size (no list of parts
    joined at the end: that doubles the peak); a chunked body grows its buffer and its
    budget reservation (``held``) as it arrives and is dropped the moment it goes over. A
    client that trickles its body gets 408 after ``timeout`` seconds instead of holding a
    slot forever. ``ClientDisconnect`` reaches the caller when the client leaves midway.
    """
    body = bytearray(declared or 0)
    extensions = request.scope.get("extensions")
    try:
        if extensions is not None and BODY_RECEIVED in extensions:  # all there: nothing to time
            size = await _read_into(body, request.receive, limit, declared, held)
        else:
            async with asyncio.timeout(timeout):
                size = await _read_into(body, request.receive, limit, declared, held)
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within {timeout:g} seconds") from None
    if size != len(body):  # uvicorn's parser enforces Content-Length; this is a guard
        raise ClientDisconnect()
    return body


async def _read_into(body: bytearray, receive: Receive, limit: int, declared: int | None, held: Reservation) -> int:
    """The ASGI messages of the body into ``body`` (Request.stream would be one more generator); its size."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect()
        part = message.get("body", b"")
        end = size + len(part)
        if end > limit:
            raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
        if declared is None:
            held.grow(len(part))
            body += part
        else:
            body[size:end] = part  # a slice of the same length: in place
        size = end
        if not message.get("more_body", False):
            return size


# -- a round's agencies ----------------------------------------------------------------------------


async def round_agencies(store: Store, round_id: int | None, agency: int) -> int | None:
    """How many agencies the round has; None for a round that does not exist (the route answers
    for it: 404 for a read, 409 naming the current round for a write).

    From the store's memory when that decides (a round never changes its agencies); otherwise,
    for a round not seen yet or an id past what was seen (maybe a round opened since), the
    storage is asked off the event loop."""
    known = store.known_agencies(round_id)
    if known is not None and 1 <= agency <= known:
        return known
    return await run_in_threadpool(_asked_agencies, store, round_id)


def _asked_agencies(store: Store, round_id: int | None) -> int | None:
    try:
        return store.round_agencies(round_id, fresh=True)
    except RoundNotFound:
        return None
