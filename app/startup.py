"""What a worker says when it starts: the round it serves, so a drawn round left in the data
dir is visible at once instead of as a surprising 409 on every upload."""

from __future__ import annotations

import logging

from app import rounds as rules
from app.settings import Settings
from app.store import RoundError, Store, StoreError

log = logging.getLogger("lottery")


def where(settings: Settings) -> str:
    """The storage this server uses, for people (the database URL without its password)."""
    if settings.database_url:
        scheme, _, rest = settings.database_url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"
    text = str(settings.data_dir)
    return text if settings.data_dir.is_absolute() or text.startswith(".") else f"./{text}"


def log_round_state(store: Store, settings: Settings) -> None:
    """One line: ``action: ronda | result: success | id: 1 | state: drawn | bets: 78697 | done: 5/5 ...``."""
    try:
        status = store.status(draw=False)  # starting never draws: the first query after it does
    except (StoreError, RoundError) as error:  # the server still starts and answers 503 until storage is back
        log.warning("action: ronda | result: fail | storage: %s | error: %s", where(settings), error)
        return
    round_id = status.round_id
    closed = rules.all_done(status.expected, status.done_count)
    state = "drawn" if status.drawn else "closed, the first query draws" if closed else "open"
    line = (
        f"action: ronda | result: success | id: {round_id} | state: {state} | bets: {status.bets} | "
        f"done: {status.done_count}/{status.expected} | storage: {where(settings)}"
    )
    if status.drawn:
        line += " | note: this round is over, new bets get 409; the operator opens the next one with POST /rounds"
    log.info(line)
