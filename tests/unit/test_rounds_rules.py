"""The round's rules (app/rounds.py), alone: no storage, no HTTP."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import rounds as rules
from app.store import AgencyClosed, RoundNotCurrent, RoundStillOpen


@given(agencies=st.integers(1, 30), done=st.sets(st.integers(-3, 40)))
def test_the_draw_is_due_exactly_when_every_agency_of_the_round_is_done(agencies: int, done: set[int]) -> None:
    assert rules.draw_due(agencies, done) == all(a in done for a in range(1, agencies + 1))
    # the count the stores keep counts only the round's agencies, each once
    assert rules.all_done(agencies, len({a for a in done if 1 <= a <= agencies})) == rules.draw_due(agencies, done)


@given(target=st.integers(1, 50), current=st.integers(1, 50))
def test_only_the_current_round_takes_bets_and_a_refusal_names_it(target: int, current: int) -> None:
    if target == current:
        rules.refuse_other_round(target, current)
        return
    with pytest.raises(RoundNotCurrent) as refused:
        rules.refuse_other_round(target, current)
    assert refused.value.current == current
    assert f"the current round is {current}; bets go to round {current}" in str(refused.value)
    assert ("is over" if target < current else "does not exist yet") in str(refused.value)


def test_closed_agency_messages() -> None:
    with pytest.raises(AgencyClosed, match="the draw has already happened"):
        rules.refuse_closed(1, drawn=True, done=True)
    with pytest.raises(AgencyClosed, match="agency 2 already said done"):
        rules.refuse_closed(2, drawn=False, done=True)
    rules.refuse_closed(2, drawn=False, done=False)
    with pytest.raises(AgencyClosed, match="agency 4 is not part of this round: its agencies are 1 to 3"):
        rules.refuse_outside_round(4, 3)


def test_the_next_round_opens_only_after_a_draw() -> None:
    rules.refuse_next_round(3, current_drawn=True)
    with pytest.raises(RoundStillOpen, match="round 3 is still open") as refused:
        rules.refuse_next_round(3, current_drawn=False)
    assert refused.value.current == 3


@given(
    agencies=st.none() | st.integers(1, 10_000),
    number=st.none() | st.integers(0, 9999) | st.just("random"),
    defaults=st.builds(rules.RoundParameters, st.integers(1, 10_000), st.integers(0, 9999)),
)
def test_an_opening_takes_the_request_or_else_the_settings(agencies, number, defaults) -> None:
    opened = rules.opening(agencies, number, defaults)
    assert opened.agencies == (defaults.agencies if agencies is None else agencies)
    assert opened.random == (number == "random")
    assert opened.winning_number == (
        None if number == "random" else defaults.winning_number if number is None else number
    )


@given(recorded=st.none() | st.integers(0, 9999))
def test_the_number_drawn_is_the_recorded_one_or_a_random_one_in_range(recorded) -> None:
    number = rules.winning_number_for_draw(recorded)
    assert number == recorded if recorded is not None else 0 <= number <= 9999


def test_the_winners_list_every_agency_of_the_round() -> None:
    assert rules.winners_by_agency(3, {2: ["9"], 5: ["x"]}) == {"1": [], "2": ["9"], "3": []}
    assert rules.agency_winners({"1": ["a"]}, 1) == ["a"] and rules.agency_winners({"1": ["a"]}, 2) == []
