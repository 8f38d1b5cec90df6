"""The app factory: settings, storage, routes, error handlers and the offline docs page.

Gunicorn imports ``app.main:app`` once in every worker process; each worker opens the
store itself (which repairs a torn tail left by a crash before serving).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import logs, metrics, openapi, problems, startup
from app.draw_watch import DrawWatch
from app.lane import DirectLane
from app.limits import BodyBudget, RefuseUnexpectedBody
from app.routes import agencies, log, operator, redoc, rounds, status
from app.routes import metrics as metrics_route
from app.settings import Settings, get_settings
from app.store import Store, open_store
from app.tokens import Tokens

DESCRIPTION = """
Agencies upload their customers' bets in chunks, say when they are done, and once every
agency is done the lottery is drawn exactly once. Each agency may then read its own winners.

Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem details.
"""


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    # FastAPIOffline serves the Swagger UI and ReDoc assets from the package, not a CDN,
    # so /docs works on a machine with no internet access.
    store = store or open_store(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()  # the worker stops: hand its database connections back

    # ReDoc's page is app/routes/redoc.py: the package's would fetch a logo from a CDN.
    app: FastAPI = FastAPIOffline(
        title="Lotería Nacional: bet collection",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks look for a configured provider on every request
        # (~11 µs of a one-bet POST's ~380); the service exports Prometheus metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # The round keeps the parameters recorded when it started (a restart with other settings
    # does not change them), so the agency ids it takes are the round's, not the settings'.
    settings = settings.model_copy(update={"agencies": store.agencies, "winning_number": store.winning_number})
    app.state.settings = settings
    app.state.store = store
    app.state.tokens = Tokens.load(settings.tokens_file, settings.agencies) if settings.tokens_file else None
    # Per worker: the body memory budget and the long polls' draw watcher (app/limits.py, app/draw_watch.py).
    app.state.body_budget = BodyBudget(settings.body_budget, settings.retry_after)
    app.state.draw_watch = DrawWatch(app.state.store)
    app.include_router(agencies.router)
    app.include_router(status.router)
    app.include_router(log.router)  # the transparency log: key, checkpoints, entries, proofs
    rounds.install(app)  # /rounds, and the agency routes of a given round
    # The operator's page (GET /), its data and static files; /metrics; request durations.
    operator.install(app)
    app.include_router(redoc.router)
    app.include_router(metrics_route.router)
    app.add_middleware(metrics.RequestDurationMiddleware)
    problems.install(app)
    # A GET or HEAD announcing a body is refused from its head (app/limits.py).
    app.add_middleware(RefuseUnexpectedBody, router=app.router)
    openapi.install(app, settings)
    # Outermost: POST /bets straight to its handler (app/lane.py). Built now, so a middleware
    # added later is refused (Starlette) instead of being silently skipped by the lane.
    app.middleware_stack = DirectLane(app.build_middleware_stack(), agencies.direct_bets(), app.exception_handlers)
    startup.log_round_state(app.state.store, settings)
    return app


def __getattr__(name: str) -> FastAPI:
    # `app.main:app` is built on first access, not at import, so tests can import this
    # module (and create_app) without a configured environment.
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)
