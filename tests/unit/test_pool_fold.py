"""The pool tracker's bulk histogram fold agrees exactly with adding one at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sqlwatch._capture.pool import fold_into
from sqlwatch._histogram import LogHistogram

durations = st.lists(st.integers(min_value=0, max_value=10**12), max_size=600)


@given(durations, durations)
def test_fold_into_equals_adding_each(first: list[int], second: list[int]) -> None:
    one_by_one = LogHistogram()
    for value in first + second:
        one_by_one.add(value)
    folded = LogHistogram()
    fold_into(folded, list(first))
    fold_into(folded, list(second))
    assert folded.buckets == {k: v for k, v in one_by_one.buckets.items() if v}
    assert (folded.count, folded.total_ns, folded.max_ns) == (
        one_by_one.count,
        one_by_one.total_ns,
        one_by_one.max_ns,
    )


def test_bucket_edges() -> None:
    values = [0, 1, 2, 3, 50, 51, 1000, 1020, 1021, 10**9]
    one_by_one = LogHistogram()
    for value in values:
        one_by_one.add(value)
    folded = LogHistogram()
    fold_into(folded, list(reversed(values)))
    assert folded.buckets == one_by_one.buckets
