"""What the operator's page reads from a store: per-agency counts, never a bet's content."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AgencyStats:
    agency: int
    bets: int = 0
    chunks: int = 0
    last_activity: float | None = None  # Unix time of the agency's last stored chunk


@dataclass(frozen=True, slots=True)
class RoundStats:
    expected: int
    done: list[int]
    agencies: dict[int, AgencyStats] = field(default_factory=dict)  # only agencies that stored something
    drawn_at: float | None = None  # Unix time of the draw; None while not drawn
    winners: dict[int, int] | None = None  # winners COUNT per agency, after the draw

    @property
    def bets(self) -> int:
        return sum(a.bets for a in self.agencies.values())
