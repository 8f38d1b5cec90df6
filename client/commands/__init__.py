"""One module per command, each with ``main(options, stop) -> exit code``; only the command given is
imported (client/__main__.py). What several of them share is here."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.http import Api
    from client.options import Options


def api(options: Options, stop: threading.Event | None = None) -> Api:
    """The server as the options name it (tests replace this to answer in-process)."""
    from client.http import Api

    return Api(
        options.server,
        options.token,
        options.retries,
        options.request_timeout,
        stop,
        connections=options.concurrency,
        retry_budget=options.retry_budget,
        cacert=options.cacert,
        insecure=options.insecure,
    )
