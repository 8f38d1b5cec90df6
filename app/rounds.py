"""The round's rules, once: a round is ``open`` and then ``drawn``; this module says who may do
what in each state, when the draw is due, what the draw finds and what each transition logs.

No I/O here. A backend reads the round's state under its lock, asks these functions, and
persists what they decide; so both backends answer alike, and a rule changes in one place.

    open  --(every agency 1..N said done)-->  drawn  --(POST /rounds)-->  the next round, open

- While open: agencies 1..N of *this* round upload and say done; a done agency is closed.
- Drawn: nothing more is stored (replays of stored chunks are still answered); winners are read.
- Only the newest round (the current one) takes bets; the next round opens only once it is drawn.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger("lottery")

OPEN, DRAWN = "open", "drawn"
RANDOM = "random"  # the winning number a round may be opened with: drawn with `secrets` at the draw
HIGHEST_NUMBER = 9999
HIGHEST_ROUND = 10**9  # round ids are 1..this: a path names a round in at most 10 digits
_ROUND_DIGITS = len(str(HIGHEST_ROUND))


# -- the errors of the round's rules (each maps to one HTTP status in app/problems.py) ------------


class RoundError(Exception):
    """Base of the refusals the round's rules make."""


class AgencyClosed(RoundError):
    """New bets after the agency said done or after the draw (409)."""


class RoundNotFound(RoundError):
    """No round with that id (404)."""


class RoundNotCurrent(RoundError):
    """Bets or done for a round that is not the current one (409); names the current round."""

    def __init__(self, message: str, current: int):
        super().__init__(message)
        self.current = current


class RoundStillOpen(RoundError):
    """A next round asked for while the current one is not drawn (409)."""

    def __init__(self, message: str, current: int):
        super().__init__(message)
        self.current = current


# -- a round's id and parameters ------------------------------------------------------------------


def parse_round_id(text: str) -> int:
    """The round a path names: exactly ``[1-9][0-9]*`` up to HIGHEST_ROUND; RoundNotFound otherwise.

    ``int()`` (and pydantic's lax int) would read ``1.0``, ``+1``, `` 1``, ``1_0`` or ``١``:
    one round has one name, and a spelling that is no round's never falls back to another.
    """
    if 0 < len(text) <= _ROUND_DIGITS and text.isascii() and text.isdigit() and text[0] != "0":
        number = int(text)
        if number <= HIGHEST_ROUND:
            return number
    shown = text if len(text) <= 20 and text.isprintable() and text.strip() == text else repr(text[:20])
    raise RoundNotFound(f"round {shown} does not exist: rounds are named 1, 2, 3, ... (at most {HIGHEST_ROUND})")


@dataclass(frozen=True, slots=True)
class RoundParameters:
    """What a round is pinned to when it opens: a restart with other settings keeps these.
    ``winning_number`` is None for a round opened with a random number, until its draw."""

    agencies: int
    winning_number: int | None

    @property
    def random(self) -> bool:
        return self.winning_number is None


def opening(agencies: int | None, winning_number: int | str | None, defaults: RoundParameters) -> RoundParameters:
    """The next round's parameters: the request's, or the settings' for what it leaves out."""
    number = defaults.winning_number if winning_number is None else winning_number
    fixed = None if isinstance(number, str) else number  # "random": drawn at the draw
    return RoundParameters(defaults.agencies if agencies is None else agencies, fixed)


# -- who may store what --------------------------------------------------------------------------


def refuse_outside_round(agency: int, agencies: int) -> None:
    if not 1 <= agency <= agencies:
        raise AgencyClosed(
            f"agency {agency} is not part of this round: its agencies are 1 to {agencies}, "
            "recorded when the round started"
        )


def refuse_closed(agency: int, *, drawn: bool, done: bool) -> None:
    """A new chunk (not a replay) for an agency of the round: refused once drawn or once the agency is done."""
    if drawn:
        raise AgencyClosed("the draw has already happened; no more bets are taken")
    if done:
        raise AgencyClosed(f"agency {agency} already said done; no more bets are taken from it")


def refuse_other_round(target: int, current: int) -> None:
    """Bets and done go only to the current round: any other is refused naming the current one."""
    if target != current:
        when = "is over" if target < current else "does not exist yet"
        raise RoundNotCurrent(
            f"round {target} {when}: the current round is {current}; bets go to round {current}", current
        )


def refuse_next_round(current: int, current_drawn: bool) -> None:
    """The next round opens only after the current one is drawn."""
    if not current_drawn:
        raise RoundStillOpen(
            f"round {current} is still open: the next round can open only once round {current} is drawn", current
        )


# -- done and the draw ---------------------------------------------------------------------------


def draw_due(agencies: int, done: Iterable[int]) -> bool:
    """Every agency 1..N said done (ids outside the round do not count)."""
    return set(range(1, agencies + 1)) <= set(done)


def all_done(agencies: int, done_count: int) -> bool:
    """``draw_due`` from a count kept as agencies say done (only ids 1..N are ever recorded)."""
    return done_count >= agencies


def winning_number_for_draw(recorded: int | None, committed: Callable[[], int] | None = None) -> int:
    """The round's fixed number; for a random round, the number derived from the seed committed
    when it opened and the log's root at its close (``committed``: tlog.draw, docs/transparency.md),
    or, where there is no such seed (a backend without the log, a round opened before it), one
    drawn now with a cryptographic RNG."""
    if recorded is not None:
        return recorded
    return committed() if committed is not None else secrets.randbelow(HIGHEST_NUMBER + 1)


def winners_by_agency(agencies: int, found: Mapping[int, list[str]]) -> dict[str, list[str]]:
    """The draw's result: every agency of the round, with its winning documents in stored order."""
    return {str(a): list(found.get(a, [])) for a in range(1, agencies + 1)}


def agency_winners(result: Mapping[str, list[str]], agency: int) -> list[str]:
    return list(result.get(str(agency), []))


# -- what each transition logs (the course's format) ----------------------------------------------


def log_done(agency: int, done: int, agencies: int) -> None:
    log.info("action: agencia_finalizada | result: success | agencia: %d | finalizadas: %d/%d", agency, done, agencies)


def log_draw(round_id: int, bets: int, winners: int, number: int, random: bool) -> None:
    """One line per round, once, after the draw is stored."""
    log.info(
        "action: sorteo | result: success | apuestas: %d | cant_ganadores: %d | ronda: %d | numero_ganador: %d%s",
        bets,
        winners,
        round_id,
        number,
        " | aleatorio: si" if random else "",
    )


def log_opened(round_id: int, params: RoundParameters) -> None:
    log.info(
        "action: ronda_abierta | result: success | ronda: %d | agencias: %d | numero_ganador: %s",
        round_id,
        params.agencies,
        RANDOM if params.random else params.winning_number,
    )
