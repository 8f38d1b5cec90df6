"""The direct lane: ``POST .../bets`` handed straight to its handler, past the middleware stack.

A ticket sold is a request (issue 22): one-bet POSTs, thousands a second. Starlette's and
FastAPI's layers (server errors, telemetry, body limits, our two middlewares, exception
mapping, the exit stack, the routers' matching over every route) each cost little, but
together more than the bet itself. The lane is the outermost layer of the app's stack: a
POST whose path is one of the bets routes' templates goes to the very handler its PlainRoute
would run (app/routes/plain.py), and what the skipped layers do for it is done here:

- an exception becomes the answer the app's own exception handlers give (app/problems.py),
  looked up as Starlette looks them up (the exception's classes in order);
- the request duration is observed with its route template (app/metrics.py);
- anything else (another method, path or scope type) goes down the stack untouched.

The same requests, sent through the lane and through the whole stack, get the same answers
(tests/api/test_lane.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from app import metrics

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Any]


class DirectLane:
    """ASGI: each of ``routes`` (POST, ``(path template, handler)``) served directly; the rest to ``stack``."""

    def __init__(
        self, stack: ASGIApp, routes: Sequence[tuple[str, Handler]], error_handlers: Mapping[Any, ErrorHandler]
    ):
        self.stack = stack
        self.routes: list[tuple[re.Pattern[str], str, Handler]] = [
            (compile_path(path)[0], path, handler) for path, handler in routes
        ]
        # The last path segment every template shares: a quick "not ours" for every other request.
        endings = {path.rsplit("/", 1)[1] for path, _ in routes}
        self.ending = "/" + endings.pop() if len(endings) == 1 else ""
        self.error_handlers = error_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = get_route_path(scope)
            if path.endswith(self.ending):
                for pattern, template, handler in self.routes:
                    found = pattern.match(path)
                    if found is not None:
                        scope["path_params"] = found.groupdict()
                        await self._serve(template, handler, scope, receive, send)
                        return
        await self.stack(scope, receive, send)

    async def _serve(self, template: str, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the metrics say when even the error answer could not be made
        try:
            request = Request(scope, receive, send)
            try:
                response = await handler(request)
            except Exception as error:
                response = await self._answer_error(request, error)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            metrics.observe_request("POST", template, status, time.perf_counter() - started)

    async def _answer_error(self, request: Request, error: Exception) -> Response:
        for kind in type(error).__mro__:
            handler = self.error_handlers.get(kind)
            if handler is not None:
                response: Response = await handler(request, error)
                return response
        raise error  # no handler: as the stack would, to the server (app/problems.py registers Exception)
