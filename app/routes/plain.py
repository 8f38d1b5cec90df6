"""A route whose parameters FastAPI documents but does not solve per request.

FastAPI solves a route's parameters on every request (models, validators, dependency
caches): on ``POST /bets`` that cost more CPU than parsing a small chunk (issue 15,
docs/performance.md). When every parameter is plain text (a path value, a header, the bearer
credentials) and the endpoint checks them itself, nothing in that solving can refuse a
request, so :class:`PlainRoute` hands the endpoint the values as they came. The OpenAPI
document is FastAPI's, from the same signature. A route that does not fit (another parameter
kind, a dependency, a default other than ``None``, included under a router with dependencies)
is refused with a TypeError when FastAPI builds it: at ``add_api_route``, and for the route as
included, at its first request or the first OpenAPI document (tests/docs build the app's).
It is never served with a parameter skipped.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, _effective_route_context_var
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Endpoint = Callable[..., Awaitable[Response | BaseModel]]


def _plain_text(field: Any) -> bool:
    """A parameter FastAPI would pass on as the text it got: ``str`` (or ``str | None``
    defaulting to None), without constraints FastAPI would check."""
    info = field.field_info
    return (
        info.annotation in (str, str | None)
        and not info.metadata  # max_length, pattern, ...: checks FastAPI would make
        and info.validation_alias in (None, field.alias)  # no other names to look for
        and (info.is_required() or info.default is None)
    )


def plain_handler(endpoint: Endpoint, dependant: Dependant, path: str, status_code: int = 200) -> Handler:
    """The per-request handler for ``endpoint``; TypeError when a parameter is not plain.

    The endpoint answers a Response, or its response model (sent as JSON with ``status_code``)."""
    problems = [
        f"{kind} parameters"
        for kind, fields in (
            ("query", dependant.query_params),
            ("cookie", dependant.cookie_params),
            ("body", dependant.body_params),
        )
        if fields
    ]
    problems += [
        f"parameter {f.name!r} is not plain text"
        for f in dependant.path_params + dependant.header_params
        if not _plain_text(f)
    ]
    # (name, bearer) of each bearer parameter; a route-level one has no name to pass its value to.
    bearers = {
        id(d): (d.name, d.call)
        for d in dependant.dependencies
        if isinstance(d.call, HTTPBearer) and not d.call.auto_error and not d.dependencies and d.name is not None
    }
    problems += [f"dependency {d.call!r}" for d in dependant.dependencies if id(d) not in bearers]
    request_name = dependant.request_param_name
    if not inspect.iscoroutinefunction(endpoint) or request_name is None:
        problems.append("the endpoint must be `async def` and take the Request")
    injected = ("websocket", "http_connection", "response", "background_tasks", "security_scopes")
    problems += [f"a {kind} parameter" for kind in injected if getattr(dependant, f"{kind}_param_name")]
    if problems or request_name is None:  # (None is among the problems: narrowed for the handler)
        raise TypeError(f"{path}: not a plain route ({'; '.join(problems)})")

    path_names = [(f.name, f.alias) for f in dependant.path_params]
    header_names = [(f.name, f.alias.lower().encode("latin-1")) for f in dependant.header_params]
    bearer_names = [name for name, _ in bearers.values()]
    wanted = frozenset([key for _, key in header_names] + ([b"authorization"] if bearer_names else []))

    async def handler(request: Request) -> Response:
        values = request.path_params
        kwargs: dict[str, Any] = {request_name: request}
        for name, alias in path_names:
            kwargs[name] = values[alias]
        # One pass over the raw headers for every header parameter (a lookup each would scan them
        # each, and raise and catch a KeyError for each header missing); the first one of a name
        # counts, as with Headers.get. ASGI header names are lowercase.
        found: dict[bytes, str] = {}
        for key, value in request.scope["headers"]:
            if key in wanted and key not in found:
                found[key] = value.decode("latin-1")
        for name, key in header_names:
            kwargs[name] = found.get(key)
        if bearer_names:
            credentials = bearer_credentials(found.get(b"authorization"))
            for name in bearer_names:
                kwargs[name] = credentials
        answer = await endpoint(**kwargs)
        if isinstance(answer, BaseModel):
            return Response(answer.__pydantic_serializer__.to_json(answer), status_code, media_type="application/json")
        return answer

    return handler


def bearer_credentials(authorization: str | None) -> HTTPAuthorizationCredentials | None:
    """What ``HTTPBearer(auto_error=False)`` gives for this Authorization header, without the
    Headers object it builds to find it (tests/unit/test_plain_route.py holds the two equal)."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


class PlainRoute(APIRoute):
    """``route_class_override=PlainRoute``: see the module's docstring."""

    def get_route_handler(self) -> Handler:
        # The route as included (its dependencies and path joined with the including router's),
        # read the way APIRoute.get_route_handler reads it.
        context = _effective_route_context_var.get()
        route = context if context is not None and context.original_route is self else self
        return plain_handler(self.endpoint, route.dependant, route.path, self.status_code or 200)
