"""``GET /redoc`` with nothing fetched from the internet.

fastapi-offline serves ReDoc's script from the package, but that script shows a "powered
by" logo from cdn.redoc.ly. Here the page loads the same script with that one address
swapped for an empty inline image (served from memory, read once per worker), and a
Content-Security-Policy that lets images come only from this server anyway.
"""

from __future__ import annotations

import functools
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

REDOC_JS = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
NO_LOGO = b"data:image/svg+xml,%3Csvg%20xmlns=%27http://www.w3.org/2000/svg%27/%3E"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; font-src 'self' data:; frame-ancestors 'none'"
)

router = APIRouter()


@functools.cache
def offline_redoc_js() -> bytes:
    return REDOC_JS.read_bytes().replace(CDN_LOGO, NO_LOGO)


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=request.app.title + " - ReDoc",
        redoc_js_url=f"{root}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{root}/static-offline-docs/favicon.png",  # fastapi-offline's mount
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = CSP
    return page


@router.get("/redoc/redoc.standalone.js", include_in_schema=False)
async def redoc_js() -> Response:
    return Response(
        offline_redoc_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )
