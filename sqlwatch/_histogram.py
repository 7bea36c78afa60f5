"""Percentiles in bounded memory: a log-bucketed histogram (DDSketch's idea).

Each duration lands in bucket ``floor(log(ns) / log(1.02))``, so a percentile
is within 1% of the true value whatever the distribution, the histogram holds
at most ~1,400 buckets for durations from 1 ns to 1,000 s, and two histograms
merge exactly (what ``Report.merge`` across pytest-xdist workers needs).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["LogHistogram"]

GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
_log = math.log


def bucket_of(duration_ns: int) -> int:
    return int(_log(duration_ns) / _LOG_GAMMA) if duration_ns > 1 else 0


_UPPER: dict[int, int] = {}
"""Bucket index -> the smallest duration of the next bucket (at most ~2,200 keys:
one per bucket up to 2**63 ns)."""


def _bucket_upper(index: int) -> int:
    upper = math.ceil(GAMMA ** (index + 1))
    while bucket_of(upper) <= index:  # float rounding: agree with bucket_of exactly
        upper += 1
    while upper > 2 and bucket_of(upper - 1) > index:
        upper -= 1
    _UPPER[index] = upper
    return upper


class LogHistogram:
    __slots__ = ("buckets", "count", "max_ns", "total_ns")

    def __init__(
        self, buckets: Iterable[tuple[int, int]] = (), max_ns: int = 0, total_ns: int = 0
    ) -> None:
        self.buckets: dict[int, int] = dict(buckets)
        self.count = sum(self.buckets.values())
        self.max_ns = max_ns
        self.total_ns = total_ns

    def add(self, duration_ns: int) -> None:
        index = bucket_of(duration_ns)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total_ns += duration_ns
        if duration_ns > self.max_ns:
            self.max_ns = duration_ns

    def add_many(self, durations: list[int]) -> None:
        """``add`` for each of ``durations`` (a list the caller owns: it is sorted).

        Sorted in C, then each non-empty bucket costs one logarithm and one
        bisection to find where the next bucket starts, whatever the number of
        values in it: durations of one statement cluster in a few buckets, so
        this costs a fraction of bucketing each value (the folds of counted
        statements and of pool waits run it for every statement and checkout).
        """
        if not durations:
            return
        durations.sort()
        buckets = self.buckets
        upper_of = _UPPER.get
        n = len(durations)
        i = 0
        while i < n:
            index = bucket_of(durations[i])
            upper = upper_of(index)
            if upper is None:
                upper = _bucket_upper(index)
            j = bisect_left(durations, upper, i)
            buckets[index] = buckets.get(index, 0) + j - i
            i = j
        self.count += n
        self.total_ns += sum(durations)
        if durations[-1] > self.max_ns:
            self.max_ns = durations[-1]

    def merge(self, other: LogHistogram) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total_ns += other.total_ns
        self.max_ns = max(self.max_ns, other.max_ns)

    def quantile_ns(self, q: float) -> float:
        """The value at quantile ``q`` (0..1) by nearest rank, within 1%; never
        above the maximum. With two samples, p95 is the slower one."""
        if self.count == 0:
            return 0.0
        target = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= target:
                estimate = GAMMA ** (index + 0.5) if index else 1.0
                return min(estimate, float(self.max_ns)) if self.max_ns else estimate
        return float(self.max_ns)

    def percentiles_ms(self) -> dict[str, float]:
        return {
            "p50": round(self.quantile_ns(0.50) / 1e6, 4),
            "p95": round(self.quantile_ns(0.95) / 1e6, 4),
            "max": round(self.max_ns / 1e6, 4),
        }

    def items(self) -> tuple[tuple[int, int], ...]:
        return tuple(sorted(self.buckets.items()))
