"""The log-bucketed histogram behind every percentile: accurate, bounded, mergeable."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlwatch._histogram import GAMMA, LogHistogram


def exact_quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[int(q * (len(ordered) - 1))])


def histogram_of(values: list[int]) -> LogHistogram:
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    return histogram


DISTRIBUTIONS = {
    "uniform": [random.Random(1).randint(10_000, 10_000_000) for _ in range(5_000)],
    "lognormal": [int(random.Random(2).lognormvariate(13, 1.5)) + 2 for _ in range(5_000)],
    "bimodal": [1_000_000] * 900 + [250_000_000] * 100,
    "one value": [42_000] * 10,
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 0.99, 1.0])
def test_quantiles_are_within_one_percent(name: str, q: float) -> None:
    values = DISTRIBUTIONS[name]
    estimate = histogram_of(values).quantile_ns(q)
    exact = exact_quantile(values, q)
    assert estimate == pytest.approx(exact, rel=0.011)
    assert estimate <= max(values)


def test_add_many_is_add_in_bulk() -> None:
    values = DISTRIBUTIONS["lognormal"]
    one_by_one = histogram_of(values)
    bulk = LogHistogram()
    bulk.add_many(values[:1000])
    bulk.add_many(values[1000:])
    assert bulk.items() == one_by_one.items()
    assert (bulk.count, bulk.total_ns, bulk.max_ns) == (
        one_by_one.count,
        one_by_one.total_ns,
        one_by_one.max_ns,
    )


def test_merge_is_exact() -> None:
    values = DISTRIBUTIONS["uniform"]
    left, right = histogram_of(values[:1234]), histogram_of(values[1234:])
    left.merge(right)
    whole = histogram_of(values)
    assert left.items() == whole.items()
    assert (left.count, left.total_ns, left.max_ns) == (whole.count, whole.total_ns, whole.max_ns)
    for q in (0.5, 0.95, 0.99):
        assert left.quantile_ns(q) == whole.quantile_ns(q)


def test_rebuilt_from_its_items_gives_the_same_quantiles() -> None:
    """What Report.merge does with the ``histogram`` field of a saved report."""
    original = histogram_of(DISTRIBUTIONS["bimodal"])
    rebuilt = LogHistogram(original.items(), max_ns=original.max_ns)
    assert rebuilt.count == original.count
    for q in (0.5, 0.95, 0.99):
        assert rebuilt.quantile_ns(q) == original.quantile_ns(q)


def test_memory_is_bounded_by_the_range_not_the_count() -> None:
    histogram = LogHistogram()
    value = 1.0
    while value < 1e12:  # every duration from 1 ns to 1,000 s, 5% apart
        for _ in range(3):
            histogram.add(int(value))
        value *= 1.05
    assert histogram.count > 1_500
    assert len(histogram.buckets) <= math.log(1e12) / math.log(GAMMA) + 1
    assert len(histogram.buckets) < 1_400


def test_empty_and_tiny_values() -> None:
    empty = LogHistogram()
    assert empty.quantile_ns(0.5) == 0.0
    assert empty.percentiles_ms() == {"p50": 0.0, "p95": 0.0, "max": 0.0}
    tiny = histogram_of([0, 1, 1])
    assert tiny.count == 3
    assert tiny.quantile_ns(0.99) <= 1.0


def test_percentiles_ms() -> None:
    histogram = histogram_of([2_000_000] * 99 + [40_000_000])
    percentiles = histogram.percentiles_ms()
    assert set(percentiles) == {"p50", "p95", "max"}
    assert percentiles["p50"] == pytest.approx(2.0, rel=0.011)
    assert percentiles["max"] == 40.0


def test_items_are_sorted_pairs() -> None:
    items = histogram_of([5_000_000, 1_000, 5_000_000, 70]).items()
    assert list(items) == sorted(items)
    assert all(isinstance(b, int) and isinstance(n, int) for b, n in items)
    assert sum(n for _, n in items) == 4


durations = st.lists(st.integers(min_value=0, max_value=10**12), max_size=600)


@settings(deadline=None)
@given(durations, durations)
def test_add_many_equals_adding_each(first: list[int], second: list[int]) -> None:
    one_by_one = LogHistogram()
    for value in first + second:
        one_by_one.add(value)
    bulk = LogHistogram()
    bulk.add_many(list(first))
    bulk.add_many(list(second))
    assert bulk.buckets == {k: v for k, v in one_by_one.buckets.items() if v}
    assert (bulk.count, bulk.total_ns, bulk.max_ns) == (
        one_by_one.count,
        one_by_one.total_ns,
        one_by_one.max_ns,
    )


def test_add_many_bucket_edges() -> None:
    values = [0, 1, 2, 3, 50, 51, 1000, 1020, 1021, 10**9]
    one_by_one = LogHistogram()
    for value in values:
        one_by_one.add(value)
    bulk = LogHistogram()
    bulk.add_many(list(reversed(values)))
    assert bulk.buckets == one_by_one.buckets
