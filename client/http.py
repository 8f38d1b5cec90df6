"""The uploader's HTTP side: one connection pool, retries with backoff, one-line errors.

Retried: connection errors, timeouts, 429 and 5xx, waiting an exponentially growing,
jittered delay ("full jitter"), and at least what ``Retry-After`` asks. Never retried: any
other 4xx, which is the server's final word about that request. Retrying a chunk is safe
because every chunk carries an Idempotency-Key and an upload range.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
from dataclasses import dataclass

# httpx imports its optional command-line tool (click, rich, pygments) when those happen
# to be installed; the uploader never uses it, and it is a third of httpx's import time,
# which dominates a short upload. A None entry makes that optional import fail as httpx
# expects it might.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402

log = logging.getLogger("client")
RETRY_STATUSES = {429, 500, 502, 503, 504}
BASE_DELAY = 0.1
MAX_DELAY = 5.0


class ClientError(Exception):
    """Something the user must act on; printed as one line, non-zero exit."""


class Rejected(ClientError):
    """The server refused a request for good (4xx other than 429)."""

    def __init__(self, response: httpx.Response):
        self.status = response.status_code
        try:
            self.problem = response.json()
        except ValueError:
            self.problem = {"detail": response.text[:300]}
        detail = self.problem.get("detail") or self.problem.get("title") or response.reason_phrase
        super().__init__(f"server answered {self.status}: {detail}")


class Stopped(Exception):
    """SIGTERM or Ctrl-C arrived while waiting."""


@dataclass
class Api:
    server: str
    token: str | None = None
    retries: int = 10
    timeout: float = 60.0
    stop: threading.Event | None = None
    transport: httpx.BaseTransport | None = None  # tests: a fake server (httpx.MockTransport)

    def __post_init__(self) -> None:
        headers = {"User-Agent": "lottery-uploader/1.0"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.stop = self.stop or threading.Event()
        # A plain-http server needs no TLS: skipping the CA bundle (verify=False builds a bare
        # context) saves a tenth of a second at start. https servers are verified as usual.
        self._client = httpx.Client(
            base_url=self.server,
            headers=headers,
            timeout=self.timeout,
            verify=self.server.startswith("https://"),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            transport=self.transport,
        )

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), **kwargs) -> httpx.Response:
        """Send with retries; return a response whose status is in ``ok`` (or 425, for the caller)."""
        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise Stopped()
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as error:
                reason, wait_at_least = _describe(error), 0.0
            else:
                if response.status_code in ok or response.status_code == 425:
                    return response
                if response.status_code in (401, 403):
                    raise ClientError(_auth_message(response))
                if response.status_code not in RETRY_STATUSES:
                    raise Rejected(response)
                reason, wait_at_least = f"HTTP {response.status_code}", _retry_after(response)
            if attempt == self.retries:
                raise ClientError(f"giving up on {method} {path} after {attempt + 1} attempts: {reason}")
            delay = max(wait_at_least, random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt)))
            log.warning(
                "action: reintento | result: in_progress | intento: %d | motivo: %s | espera: %.2fs",
                attempt + 1,
                reason,
                delay,
            )
            if self.stop.wait(delay):
                raise Stopped()
        raise AssertionError("unreachable")


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return min(float(value), 60.0) if value.isdigit() else 0.0


def _describe(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.ConnectError):
        return "server unreachable"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return f"connection error ({type(error).__name__})"


def _auth_message(response: httpx.Response) -> str:
    if response.status_code == 401:
        return "server answered 401: a valid token is required (--token, LOTTERY_TOKEN or LOTTERY_TOKEN_FILE)"
    return "server answered 403: this token belongs to another agency"
