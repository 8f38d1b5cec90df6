"""``bet``: send one bet (its fields also from the course's NOMBRE, APELLIDO, ... variables)."""

from __future__ import annotations

import logging

from client import commands
from client.config import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from client.options import Options

log = logging.getLogger("client")


def main(options: Options, stop: threading.Event) -> int:
    try:
        number = int(options.number or "")
    except ValueError:
        raise ConfigError(f"--number must be an integer, got {options.number!r}") from None
    fields = {
        "first_name": options.first_name,
        "last_name": options.last_name,
        "document": options.document,
        "birthdate": options.birthdate,
        "number": number,
    }
    api = commands.api(options, stop)
    try:
        import uuid

        # One key per invocation: retries inside this run never store the bet twice.
        api.request(
            "POST",
            f"/agencies/{options.agency}/bets",
            json={"bets": [fields]},
            headers={"Idempotency-Key": f"bet-{uuid.uuid4()}"},
        )
    finally:
        api.close()
    log.info("action: apuesta_enviada | result: success | dni: %s | numero: %d", options.document, number)
    return 0
