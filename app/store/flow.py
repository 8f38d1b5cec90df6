"""The round's flow, once for every backend: which round a request writes to, how a chunk is
decided, a done recorded, the draw made when due (and made late after a crash), a round opened.

A backend only persists and locks. It opens a :class:`RoundTxn`, the round's state under its
lock (a file lock and the round's files; a transaction holding the round's row), and these
functions read and change the round through it, asking app/rounds.py what the rules say. So
both backends answer alike, and a step of the flow changes in one place.

    request --> target round --> RoundTxn (locked) --> rules decide --> txn persists --> commit --> log
"""

from __future__ import annotations

import functools
import time
from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from app import metrics
from app import rounds as rules
from app.rounds import RoundError, RoundParameters
from app.store.base import Chunk, ChunkReceipt, DoneReceipt, RoundInfo, RoundStatus, Store, StoreError
from tlog import draw


class RoundTxn(Protocol):
    """One round's state under its lock: what the flow reads and the few writes it asks for."""

    round_id: int
    params: RoundParameters  # as recorded when the round opened (winning_number None: random)

    def drawn(self) -> bool: ...

    def done_count(self) -> int:
        """How many of the round's agencies (1..N) said done: kept as they say it, never recounted,
        so a done costs the same with 10 agencies or 10,000 (issue 21)."""
        ...

    def add_done(self, agency: int) -> bool:
        """Record the agency's done; False when it was already recorded."""
        ...

    def bets(self) -> int: ...

    def winning_bets(self, number: int) -> dict[int, list[str]]:
        """The documents of the bets on ``number``, per agency, in stored order."""
        ...

    def close_log(self) -> LogClose | None:
        """The round's close leaf appended to the transparency log (committed with save_draw);
        None when the backend keeps no log."""
        ...

    def save_draw(self, number: int, bets: int, winners: dict[str, list[str]]) -> None: ...


@dataclass(frozen=True, slots=True)
class LogClose:
    """The log's tree with a round's close leaf in (its last leaf), and the seed committed when
    the round opened (None: a fixed number, or a round opened before the log)."""

    origin: str
    size: int
    root: bytes
    seed: bytes | None


@dataclass(frozen=True, slots=True)
class Drawn:
    """A draw this call made: logged once, after its commit (``announce``)."""

    round_id: int
    bets: int
    winners: int
    number: int
    random: bool


Outcome = bool | Drawn  # already drawn (True), not due (False), or drawn by this call
DoneOutcome = tuple[DoneReceipt, bool, Outcome]  # record_done's: the receipt, recorded now, the draw


def target_round(requested: int | None, current: int, *, writing: bool) -> int:
    """The round a request acts on: the one it names, else the current one. Bets and done go
    only to the current round: a later one is refused naming it (a past one is refused by
    ``decide_chunk`` and ``record_done`` once its state is known)."""
    if requested is None:
        return current
    if writing and requested > current:
        rules.refuse_other_round(requested, current)
    return requested


def decide_chunk(
    chunk: Chunk,
    agencies: int,
    replay: Callable[[], ChunkReceipt | None],
    closed: Callable[[], tuple[bool, bool]],
    named: tuple[int, Callable[[], int]] | None = None,
) -> ChunkReceipt | None:
    """A chunk's answer before it is stored: a replay's receipt, a refusal, or None (store it).

    ``closed`` tells ``(drawn, the agency said done)``. ``named`` is ``(round, current round)``
    when the request named its round: a drawn round that is not the current one is refused
    naming the current one (an agency retrying into a past round learns where bets go now)."""
    rules.refuse_outside_round(chunk.agency, agencies)
    receipt = replay()
    if receipt is None:
        drawn, done = closed()
        if drawn and named is not None:
            rules.refuse_other_round(named[0], named[1]())
        rules.refuse_closed(chunk.agency, drawn=drawn, done=done)
    return receipt


def record_done(txn: RoundTxn, agency: int) -> DoneOutcome:
    """Under the round's lock: the agency's done, then the draw when it completes the set.
    Returns the receipt, whether this call recorded the done, and the draw's outcome."""
    agencies = txn.params.agencies
    rules.refuse_outside_round(agency, agencies)
    inserted = txn.add_done(agency)
    outcome = draw_if_due(txn)
    return DoneReceipt(agency, txn.done_count(), agencies, bool(outcome)), inserted, outcome


def draw_if_due(txn: RoundTxn) -> Outcome:
    """Under the round's lock: draw when every agency is done and nobody drew yet."""
    if txn.drawn():
        return True
    params = txn.params
    if not rules.all_done(params.agencies, txn.done_count()):
        return False
    started = time.perf_counter()
    closing = txn.close_log()
    committed: Callable[[], int] | None = None
    if closing is not None and closing.seed is not None:
        # The number nobody could steer: the seed committed at the opening, the root with the close leaf.
        committed = functools.partial(
            draw.winning_number, closing.origin, txn.round_id, closing.size, closing.root, closing.seed
        )
    number = rules.winning_number_for_draw(params.winning_number, committed)
    found = txn.winning_bets(number)
    bets = txn.bets()
    txn.save_draw(number, bets, rules.winners_by_agency(params.agencies, found))
    metrics.observe_draw(time.perf_counter() - started)
    return Drawn(txn.round_id, bets, sum(len(v) for v in found.values()), number, params.random)


def announce(outcome: Outcome) -> bool:
    """After the commit: the course's ``sorteo`` line, once per round. True when drawn."""
    if isinstance(outcome, Drawn):
        rules.log_draw(outcome.round_id, outcome.bets, outcome.winners, outcome.number, outcome.random)
        return True
    return outcome


def finish_done(receipt: DoneReceipt, inserted: bool, outcome: Outcome) -> DoneReceipt:
    """After the done's commit: its line (when this call recorded it), then the draw's."""
    if inserted:
        rules.log_done(receipt.agency, receipt.done, receipt.expected)
    announce(outcome)
    return receipt


@dataclass(frozen=True, slots=True)
class Published:
    """What a round shows without its lock: an agency's winners once drawn (None before), and
    how many of its agencies are done (to tell a draw that a crash left undone)."""

    round_id: int
    agencies: int
    winners: list[str] | None
    done_count: Callable[[], int]


class RoundFlow(Store):
    """The Store the routes use: the round's flow, over the primitives a backend implements."""

    settings: RoundParameters  # the settings' parameters, for a round opened now

    # -- what a backend implements -------------------------------------------------------------

    @abstractmethod
    def locked_round(self, round: int | None, *, writing: bool) -> AbstractContextManager[RoundTxn]:
        """The round (``target_round`` of the request's) under its lock, as a RoundTxn."""

    @abstractmethod
    def published(self, round: int | None, agency: int) -> Published: ...

    @abstractmethod
    def read_status(self, round: int | None) -> RoundStatus:
        """The round's state, read only."""

    @abstractmethod
    def create_round(self, params: RoundParameters) -> int:
        """Under the lock of the rounds: ``rules.refuse_next_round`` for the newest round, then
        the next round, whole, with ``params``; its id."""

    # -- the flow --------------------------------------------------------------------------------

    def mark_done(self, agency: int, round: int | None = None) -> DoneReceipt:
        with self.locked_round(round, writing=True) as txn:
            receipt, inserted, outcome = record_done(txn, agency)
        return finish_done(receipt, inserted, outcome)

    def winners(self, agency: int, round: int | None = None) -> list[str] | None:
        shown = self.published(round, agency)
        if shown.winners is not None:
            return shown.winners
        # Every agency done but nobody drew (a crash between the two): draw now.
        if not rules.all_done(shown.agencies, shown.done_count()) or not self.draw_late(shown.round_id):
            return None
        return self.published(shown.round_id, agency).winners

    def status(self, *, draw: bool = True, round: int | None = None) -> RoundStatus:
        found = self.read_status(round)
        due = draw and not found.drawn and rules.all_done(found.expected, found.done_count)
        if due and self.draw_late(found.round_id):  # every agency done, nobody drew (a crash): draw now
            found = self.read_status(found.round_id)
        return found

    def draw_late(self, round_id: int) -> bool:
        with self.locked_round(round_id, writing=False) as txn:
            outcome = draw_if_due(txn)
        return announce(outcome)

    def open_round(self, agencies: int | None = None, winning_number: int | str | None = None) -> RoundInfo:
        params = rules.opening(agencies, winning_number, self.settings)
        new = self.create_round(params)
        rules.log_opened(new, params)
        return self.round_info(new)

    # The current round's parameters; the settings' while the storage cannot be read (the server
    # starts anyway, and answers 503 until it can).
    @property
    def agencies(self) -> int:  # type: ignore[override]  # a property over Store's attribute
        try:
            return self.round_agencies(None, fresh=True)
        except (StoreError, RoundError):
            return self.settings.agencies

    @property
    def winning_number(self) -> int | None:  # type: ignore[override]  # a property over Store's attribute
        try:
            return self.recorded(None).winning_number
        except (StoreError, RoundError):
            return self.settings.winning_number

    @abstractmethod
    def recorded(self, round: int | None) -> RoundParameters:
        """The round's parameters as recorded when it opened."""
