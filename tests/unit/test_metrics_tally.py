"""The metrics' tally (app/metrics.py): what a turn's requests add is written once a value, at
the turn's end, and reads the same as writing each addition at once."""

from __future__ import annotations

import asyncio
import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics

LABELS = ("a", "b", "c")
# A duration in seconds, bucket bounds included (an amount equal to a bound is in that bucket).
AMOUNTS = st.one_of(
    st.floats(min_value=0, max_value=20, allow_nan=False),
    st.sampled_from(Histogram.DEFAULT_BUCKETS[:-1]),
)
OPERATION = st.tuples(st.sampled_from(("count", "observe")), st.sampled_from(LABELS), AMOUNTS, st.booleans())


def series() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("lottery_test_total", "t", ["label"], registry=registry)
    histogram = Histogram("lottery_test_seconds", "t", ["label"], registry=registry)
    return registry, counter, histogram


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if not sample.name.endswith("_created"):  # when a series was made: differs per registry
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@given(st.lists(OPERATION, max_size=60))
def test_a_tally_written_turn_by_turn_reads_as_each_addition_written_at_once(operations) -> None:
    direct, direct_counter, direct_histogram = series()
    tallied, counter, histogram = series()
    tally = metrics._Tally()

    async def requests() -> None:
        for kind, label, amount, turn_ends in operations:
            if kind == "count":
                tally.count(counter.labels(label), amount)
            else:
                tally.observe(histogram.labels(label), amount)
            if turn_ends:
                await asyncio.sleep(0)

    for kind, label, amount, _ in operations:
        if kind == "count":
            direct_counter.labels(label).inc(amount)
        else:
            direct_histogram.labels(label).observe(amount)
    asyncio.run(requests())  # the loop runs its last turn's callback before it closes
    expected, got = samples(direct), samples(tallied)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if key[0].endswith(("_bucket", "_count")):
            assert got[key] == value, key  # how many observations: exact
        else:  # a sum of floats, added in another order
            assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-12), key


def test_a_turns_additions_are_written_when_it_ends_and_not_before() -> None:
    registry, counter, histogram = series()
    tally = metrics._Tally()
    seen = []

    async def request() -> None:
        tally.count(counter.labels("a"), 3)
        tally.observe(histogram.labels("a"), 0.2)
        seen.append(registry.get_sample_value("lottery_test_total", {"label": "a"}))
        await asyncio.sleep(0)  # the turn ends: its callback writes
        seen.append(registry.get_sample_value("lottery_test_total", {"label": "a"}))
        seen.append(registry.get_sample_value("lottery_test_seconds_count", {"label": "a"}))

    asyncio.run(request())
    assert seen == [0.0, 3.0, 1.0]


def test_off_an_event_loop_an_addition_is_written_at_once() -> None:
    registry, counter, histogram = series()
    tally = metrics._Tally()
    tally.count(counter.labels("a"), 2)
    tally.observe(histogram.labels("b"), 0.3)
    assert registry.get_sample_value("lottery_test_total", {"label": "a"}) == 2.0
    assert registry.get_sample_value("lottery_test_seconds_sum", {"label": "b"}) == 0.3


def test_a_scrape_writes_what_waits_first() -> None:
    """render() flushes this process's tally: in-process callers read what they just answered."""
    before = metrics.render()

    async def answer() -> bytes:
        metrics.chunk_stored(999983, 5, False)
        return metrics.render()  # in the same turn: nothing flushed it yet but the scrape

    after = asyncio.run(answer())
    assert b'lottery_bets_stored_total{agency="999983"} 5.0' not in before
    assert b'lottery_bets_stored_total{agency="999983"} 5.0' in after
