"""Two minimal apps for the fixed cost of a request (bench/server_cpu.py): the same answer from
a FastAPI route and from a raw ASGI callable, served by the server's gunicorn config."""

from __future__ import annotations

from fastapi import FastAPI, Request

# FastAPI's telemetry hooks off, as in the service (app/main.py): the floor is the same framework.
fastapi_app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})


@fastapi_app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


@fastapi_app.post("/agencies/{agency}/bets", status_code=201)
async def bare_bets(agency: int, request: Request) -> dict[str, int]:
    """The floor under a one-bet POST (bench/small_requests.py): read the body, answer JSON."""
    await request.body()
    return {"agency": agency, "stored": 1}


async def raw_app(scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
    if scope["type"] != "http":  # lifespan: nothing to set up
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
