"""The uploader's HTTP side: one httpx connection pool, retries with backoff, one-line errors.

Retried: connection errors, timeouts, 408, 429 and 5xx, for a time budget (``--retry-budget``,
5 minutes: a database failover answers 503 for about 50 s, issue 24), not a count; each wait
grows exponentially, jittered (so many uploaders do not retry in step), and is at least what
``Retry-After`` asks. The first retry of an outage logs one line ("waiting for the server"),
the first answer after it another; each retry is a DEBUG line. Never retried: any other 4xx,
which is the server's final word about that request. Retrying a chunk is safe because every
chunk carries an Idempotency-Key and an upload range.
"""

from __future__ import annotations

import logging
import sys
import threading
from time import monotonic

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from pathlib import Path
    from typing import Any, Protocol

    class Server(Protocol):
        """What the uploader's parts ask of the server: an Api, or a rounds.RoundApi around one."""

        stop: threading.Event
        timeout: float

        def request(self, method: str, path: str, *, ok: tuple[int, ...] = ..., **kwargs: Any) -> Response: ...

        def close(self) -> None: ...

    import httpx
    from httpx import Response

log = logging.getLogger("client")
# httpx itself is imported inside the functions that use it, when the first request is about to
# be made: --help, a bad option or a refused token never pay for it. It imports its optional
# command-line tool (click, rich, pygments) when those happen to be installed; the uploader never
# uses it, and it is a third of httpx's import time. A None entry makes that optional import fail
# as httpx expects it might; set here, before any of the uploader's code imports httpx.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None is how an import is blocked
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
RETRY_BUDGET = 300.0  # seconds a request keeps retrying (client/options.py: --retry-budget)
BASE_DELAY = 0.1
# The longest wait between attempts: the pause an agency sees after the server is back. Not the
# server's keep-alive (gunicorn.conf.py: 5 s), which a reused connection would race.
MAX_DELAY = 4.0
# A pooled connection idle this long is closed, not reused: shorter than any server keep-alive
# (gunicorn's default is 2 s, ours 5 s), so a request never goes on a connection the server is
# closing at that instant (a reset, unanswered: an attempt lost). Busy uploads never idle this long.
KEEPALIVE_EXPIRY = 1.0


class ClientError(Exception):
    """Something the user must act on; printed as one line, non-zero exit."""


class Rejected(ClientError):
    """The server refused a request for good (4xx other than 429)."""

    def __init__(self, response: Response):
        self.status = response.status_code
        try:
            self.problem = response.json()
        except ValueError:
            self.problem = {"detail": response.text[:300]}
        detail = self.problem.get("detail") or self.problem.get("title") or response.reason_phrase
        super().__init__(f"server answered {self.status}: {detail}")


class Stopped(Exception):
    """SIGTERM or Ctrl-C arrived while waiting."""


class InsecureServer(ClientError):
    """The options would send a token in clear, or name a CA file that cannot be used."""


def is_loopback(server: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(server).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(server: str, token: str | None, insecure: bool) -> None:
    """A token never crosses the network in clear: plain http only to this machine, or when told."""
    if token and server.startswith("http://") and not insecure and not is_loopback(server):
        raise InsecureServer(
            f"refusing to send the agency token in clear text to {server}: use an https:// server URL "
            "(--cacert FILE if it has a private CA), or pass --insecure if this network is trusted"
        )


def tls_verify(server: str, cacert: str | Path | None) -> ssl.SSLContext | bool:
    """What httpx verifies the server's certificate with: a context trusting only ``cacert`` when
    given, else httpx's default (certifi's CA bundle); False for plain http, where there is no TLS
    and loading a CA bundle would only cost start-up time."""
    if not server.startswith("https://"):
        return False
    if cacert is None:
        return True
    import ssl

    try:
        return ssl.create_default_context(cafile=str(cacert))
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise InsecureServer(f"cannot use CA certificate file {cacert}: {reason}") from None


def _untrusted(error: Exception) -> ssl.SSLCertVerificationError | None:
    import ssl

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class Api:
    def __init__(
        self,
        server: str,
        token: str | None = None,
        retries: int | None = None,  # at most this many retries of a request (None: the budget decides)
        timeout: float = 60.0,
        stop: threading.Event | None = None,
        *,
        connections: int = 4,  # at most this many requests at once (the uploader's --concurrency)
        retry_budget: float = RETRY_BUDGET,  # seconds a request keeps retrying transient failures
        cacert: str | Path | None = None,  # a private CA to trust for an https server
        insecure: bool = False,  # allow a token over plain http to another machine
        transport: httpx.BaseTransport | None = None,  # tests: httpx.MockTransport instead of the network
    ):
        self.server, self.token, self.retries, self.timeout = server.rstrip("/"), token, retries, timeout
        self.cacert, self.insecure, self.transport = cacert, insecure, transport
        self.retry_budget = retry_budget
        self._waiting_since: float | None = None  # when the current outage was first met
        self.connections = max(connections, 1)
        check_transport(self.server, self.token, self.insecure)
        self.headers = {"User-Agent": "lottery-uploader/1.0"}
        if self.token:
            self.headers["Authorization"] = f"Bearer {self.token}"
        self.stop = stop or threading.Event()
        self.verify = tls_verify(self.server, self.cacert)  # a bad CA file is an error before any request
        self._client: httpx.Client | None = None
        self._urls: dict[str, httpx.URL] = {}  # parsed once per path: httpx parses a str URL on every request
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        """The one ``httpx.Client`` (its pool shared by the sender threads), made on first use."""
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(  # no base URL or headers: _build puts both in each request
                    timeout=self.timeout,
                    verify=self.verify,
                    limits=httpx.Limits(
                        max_connections=self.connections,
                        max_keepalive_connections=self.connections,
                        keepalive_expiry=KEEPALIVE_EXPIRY,
                    ),
                    transport=self.transport,
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()

    def _build(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        json: object = None,
        timeout: float | None = None,
    ) -> httpx.Request:
        """The request as ``Client.request`` would build it, minus the merging it redoes every time
        (base URL joined and reparsed, default headers merged): the URL is parsed once per path and
        the headers are ours only (no Accept-Encoding: the answers are small, better not compressed)."""
        import httpx

        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.server + path)
        extensions = None if timeout is None else {"timeout": httpx.Timeout(timeout).as_dict()}
        return httpx.Request(
            method,
            url,
            params=params,
            headers={**self.headers, **headers} if headers else self.headers,
            content=content,
            json=json,
            extensions=extensions,
        )

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> Response:
        """Send with retries; return a response whose status is in ``ok`` (or 425, for the caller).

        ``kwargs``: ``params``, ``headers``, ``content``, ``json`` and ``timeout``, as httpx's."""
        import httpx  # loaded by now, or by _http() below

        attempt, give_up_at = 0, None
        while True:
            if self.stop.is_set():
                raise Stopped()
            client = self._http()
            try:
                # One Client (its pool, proxies from the environment, its timeout) sends a request
                # built here: Client.request would rebuild and reparse it on every call (issue 15).
                response = client.send(self._build(method, path, **kwargs))
            except httpx.TransportError as error:
                if untrusted := _untrusted(error):  # retrying cannot make a certificate trusted
                    raise ClientError(self._untrusted_message(untrusted)) from None
                reason, wait_at_least = self._describe(error), 0.0
            else:
                if response.status_code in ok or response.status_code == 425:
                    self._answered()
                    return response
                if response.status_code in (401, 403):
                    raise ClientError(_auth_message(response))
                if response.status_code not in RETRY_STATUSES:
                    raise Rejected(response)
                reason, wait_at_least = f"HTTP {response.status_code}", retry_after(response, 0.0)
            now = monotonic()
            if give_up_at is None:
                give_up_at = now + self.retry_budget
                self._waiting(reason)
            attempt += 1
            if give_up_at - now < 0.01 or self.retries is not None and attempt > self.retries:
                spent = now - give_up_at + self.retry_budget
                raise ClientError(f"giving up on {method} {path} after {attempt} attempts in {spent:.0f} s: {reason}")
            delay = min(backoff(attempt, wait_at_least), give_up_at - now)  # the last attempt at the budget's end
            log.debug(
                "action: reintento | result: in_progress | intento: %d | motivo: %s | espera: %.2fs",
                attempt,
                reason,
                delay,
            )
            if self.stop.wait(delay):
                raise Stopped()

    def _waiting(self, reason: str) -> None:
        """One line when an outage is first met (by any of the sender threads), not one per retry."""
        with self._lock:
            if self._waiting_since is not None:
                return
            self._waiting_since = monotonic()
        log.warning(
            "action: reintento | result: in_progress | motivo: %s | detail: waiting for the server, "
            "retrying each request for up to %.0f s",
            reason,
            self.retry_budget,
        )

    def _answered(self) -> None:
        if self._waiting_since is None:
            return
        with self._lock:
            since, self._waiting_since = self._waiting_since, None
        if since is not None:
            log.info(
                "action: reintento | result: success | detail: the server answers again after %.1f s",
                monotonic() - since,
            )

    def _describe(self, error: httpx.TransportError) -> str:
        import httpx

        if isinstance(error, httpx.ConnectError):
            return f"server unreachable at {self.server}"
        if isinstance(error, httpx.TimeoutException):
            return f"timed out waiting for {self.server}"
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return f"connection error with {self.server} ({detail})"

    def _untrusted_message(self, error: ssl.SSLCertVerificationError) -> str:
        if self.cacert is None:
            hint = "if it uses a private CA, pass that CA's certificate with --cacert FILE (or LOTTERY_CACERT)"
        else:
            hint = f"the CA in {self.cacert} did not sign it: pass the CA certificate that did with --cacert FILE"
        return f"the certificate of {self.server} is not trusted ({error.verify_message or error.reason}): {hint}"


def backoff(attempt: int, at_least: float = 0.0) -> float:
    """The wait before retry number ``attempt`` (1, 2, ...): a random point in the upper half of
    an exponentially growing window capped at MAX_DELAY, and at least ``at_least`` (Retry-After)."""
    import random  # only when something failed

    ceiling = min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1))
    return max(at_least, random.uniform(ceiling / 2, ceiling))


def retry_after(response: Response, default: float) -> float:
    """Seconds the server asks to wait (``Retry-After`` in seconds, capped at a minute), else ``default``."""
    value = response.headers.get("retry-after", "").strip()
    return min(float(value), 60.0) if value.isdigit() else default


def _auth_message(response: Response) -> str:
    if response.status_code == 401:
        return "server answered 401: a valid token is required (--token, LOTTERY_TOKEN or LOTTERY_TOKEN_FILE)"
    return "server answered 403: this token belongs to another agency"
