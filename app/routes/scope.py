"""One handler, two paths: an agency route of the current round and of a round named in the path.

Every agency handler takes ``round_id: int | None`` (None: the current round). :func:`at_round`
serves it either at ``/agencies/{agency}/...`` (``round_id`` is None; the parameter is not
in the signature FastAPI reads) or under ``/rounds/{round}/...`` (a plain-text ``round`` path
parameter, parsed by the round's rule, ``app.rounds.parse_round_id``, before the handler runs:
any other spelling is 404 and never another round). FastAPI, and PlainRoute, read the signature
given here, so the OpenAPI document names the round exactly where the path has it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from app.deps import RoundText
from app.rounds import parse_round_id

ROUND_PARAMETER = "round_id"

Endpoint = Callable[..., Awaitable[Any]]


def at_round(endpoint: Endpoint, *, named: bool) -> Endpoint:
    """``endpoint`` as served at a named round (``named``) or at the current one."""
    hints = typing.get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    if ROUND_PARAMETER not in signature.parameters:
        raise TypeError(f"{endpoint.__qualname__}: an agency handler takes {ROUND_PARAMETER}")
    keyword = inspect.Parameter.KEYWORD_ONLY  # FastAPI passes everything by name
    parameters = [
        p.replace(kind=keyword, annotation=hints.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.name != ROUND_PARAMETER
    ]
    if named:
        parameters.insert(0, inspect.Parameter("round", keyword, annotation=RoundText))

    @functools.wraps(endpoint)
    async def served(**values: Any) -> Any:
        round_id = parse_round_id(values.pop("round")) if named else None
        return await endpoint(**values, round_id=round_id)

    served.__signature__ = signature.replace(  # type: ignore[attr-defined]  # read by inspect.signature
        parameters=parameters, return_annotation=hints.get("return", signature.return_annotation)
    )
    del served.__wrapped__  # FastAPI must read the signature above, not the handler's own
    return served
