"""Per-scope aggregates that grow with distinct fingerprints, not with statements.

Operations and tables are not counted per statement: each fingerprint has one
operation and one set of tables, so they are summed from the fingerprint
aggregates when a report is built. The per-statement work is one dict lookup
and a histogram bucket.
"""

from __future__ import annotations

from collections import Counter
from operator import itemgetter
from typing import Any

from sqlwatch._capture.call_sites import CallSite, format_call_site
from sqlwatch._capture.execution import Execution
from sqlwatch._histogram import LogHistogram
from sqlwatch.records import FingerprintStats, StatementInfo

__all__ = ["Aggregator", "FingerprintAggregate"]

_AGGREGATED_FIELDS = itemgetter(2, 4, 8, 10)
"""info, duration_ns, call_site, error of an ``Execution``, picked in C."""

MAX_FINGERPRINTS = 10_000
MAX_UNFOLDED = 8_192
"""Durations waiting to be folded into a scope's histograms, at most: a bound per
scope, not per fingerprint (10,000 fingerprints with a few hundred each would
be megabytes)."""
MAX_CALL_SITES = 16
REPORTED_CALL_SITES = 5
"""Call sites a report lists per fingerprint (also when reports are merged)."""
OVERFLOW_FINGERPRINT = "overflow"


class FingerprintAggregate:
    """Durations are appended raw and folded into the histogram in bulk (by the
    ``Aggregator``), which costs a quarter of bucketing each one as it arrives."""

    __slots__ = ("_unfolded", "call_sites", "histogram", "info")

    def __init__(self, info: StatementInfo) -> None:
        self.info = info
        self.histogram = LogHistogram()
        self.call_sites: dict[CallSite | None, int] = {}
        self._unfolded: list[int] = []

    def fold(self) -> LogHistogram:
        durations = self._unfolded
        if durations:
            self.histogram.add_many(durations)
            self._unfolded = []
        return self.histogram

    @property
    def count(self) -> int:
        return self.histogram.count + len(self._unfolded)

    @property
    def total_ns(self) -> int:
        return self.fold().total_ns

    def to_stats(self) -> FingerprintStats:
        info = self.info
        histogram = self.fold()
        ranked = sorted(self.call_sites.items(), key=lambda item: -item[1])
        named = [
            (text, n)
            for text, n in (
                (format_call_site(site), n) for site, n in ranked[:REPORTED_CALL_SITES]
            )
            if text is not None
        ]
        sites = tuple(text for text, _ in named)
        total_ms = histogram.total_ns / 1e6
        count = histogram.count
        return FingerprintStats(
            fingerprint=info.fingerprint,
            normalized=info.normalized,
            operation=info.operation,
            tables=info.tables,
            count=count,
            total_ms=round(total_ms, 4),
            mean_ms=round(total_ms / count, 4) if count else 0.0,
            p50_ms=round(histogram.quantile_ns(0.50) / 1e6, 4),
            p95_ms=round(histogram.quantile_ns(0.95) / 1e6, 4),
            p99_ms=round(histogram.quantile_ns(0.99) / 1e6, 4),
            max_ms=round(histogram.max_ns / 1e6, 4),
            call_sites=sites,
            histogram=histogram.items(),
            call_site_counts=tuple(n for _, n in named),
        )


_OVERFLOW_INFO = StatementInfo(
    operation="OTHER",
    tables=(),
    fingerprint=OVERFLOW_FINGERPRINT,
    normalized=f"(statements beyond the first {MAX_FINGERPRINTS} distinct fingerprints)",
    parse_ok=False,
)


class Aggregator:
    """Counts and timings of one scope. The caller holds the scope's lock."""

    def __init__(self) -> None:
        self.query_count = 0
        self.total_ns = 0
        self.fingerprints: dict[str, FingerprintAggregate] = {}
        self.errors: dict[str, int] = {}
        self._unfolded = 0
        self._overflow_operations: dict[str, int] = {}
        self._overflow_tables: dict[str, int] = {}
        """What the statements folded into the overflow aggregate were: its own
        operation is ``OTHER`` and it has no tables, but the report's ``operations``
        and ``tables`` count every statement."""

    def add_batch(self, executions: list[Execution]) -> None:
        fingerprints = self.fingerprints
        total = 0
        for info, duration, site, error in map(_AGGREGATED_FIELDS, executions):
            total += duration
            aggregate = fingerprints.get(info.fingerprint)
            if aggregate is None:
                aggregate = self._new_aggregate(info, 1)
            aggregate._unfolded.append(duration)
            sites = aggregate.call_sites
            seen = sites.get(site)
            if seen is not None:
                sites[site] = seen + 1
            elif len(sites) < MAX_CALL_SITES:
                sites[site] = 1
            if error is not None:
                self.errors[error.__name__] = self.errors.get(error.__name__, 0) + 1
        self.query_count += len(executions)
        self.total_ns += total
        self._unfolded += len(executions)
        if self._unfolded >= MAX_UNFOLDED:
            self.fold()

    def fold(self) -> None:
        """Every waiting duration, into its fingerprint's histogram."""
        for aggregate in self.fingerprints.values():
            aggregate.fold()
        self._unfolded = 0

    def add_counted(
        self, info: StatementInfo, durations: list[int], sites: list[CallSite]
    ) -> None:
        """Statements of one SQL string that left no record (``Counted``)."""
        aggregate = self.fingerprints.get(info.fingerprint)
        if aggregate is None:
            aggregate = self._new_aggregate(info, len(durations))
        aggregate._unfolded.extend(durations)
        counts = aggregate.call_sites
        for site, n in Counter(sites).items():
            seen = counts.get(site)
            if seen is not None:
                counts[site] = seen + n
            elif len(counts) < MAX_CALL_SITES:
                counts[site] = n
        self.query_count += len(durations)
        self.total_ns += sum(durations)
        self._unfolded += len(durations)
        if self._unfolded >= MAX_UNFOLDED:
            self.fold()

    def _new_aggregate(self, info: StatementInfo, statements: int) -> FingerprintAggregate:
        """The aggregate of a fingerprint not seen yet, or, past ``MAX_FINGERPRINTS``,
        the overflow one (then every statement of ``info`` comes here)."""
        if len(self.fingerprints) >= MAX_FINGERPRINTS:
            operations = self._overflow_operations
            operations[info.operation] = operations.get(info.operation, 0) + statements
            tables = self._overflow_tables
            for table in info.tables:
                seen = tables.get(table)
                if seen is not None:
                    tables[table] = seen + statements
                elif len(tables) < MAX_FINGERPRINTS:  # bounded, as the fingerprints are
                    tables[table] = statements
            info = _OVERFLOW_INFO
            existing = self.fingerprints.get(OVERFLOW_FINGERPRINT)
            if existing is not None:
                return existing
        aggregate = self.fingerprints[info.fingerprint] = FingerprintAggregate(info)
        return aggregate

    def contribute(self, fields: dict[str, Any]) -> None:
        if not self.fingerprints:  # a scope that ran nothing: most requests of a web app
            fields.update(
                query_count=0,
                total_query_ms=0.0,
                operations={},
                tables={},
                fingerprints=(),
                errors={},
            )
            return
        operations: dict[str, int] = {}
        tables: dict[str, int] = {}
        for aggregate in self.fingerprints.values():
            info = aggregate.info
            if info is _OVERFLOW_INFO:
                continue
            operations[info.operation] = operations.get(info.operation, 0) + aggregate.count
            for table in info.tables:
                tables[table] = tables.get(table, 0) + aggregate.count
        for operation, n in self._overflow_operations.items():
            operations[operation] = operations.get(operation, 0) + n
        for table, n in self._overflow_tables.items():
            tables[table] = tables.get(table, 0) + n
        ranked = sorted(self.fingerprints.values(), key=lambda a: -a.fold().total_ns)
        fields.update(
            query_count=self.query_count,
            total_query_ms=round(self.total_ns / 1e6, 4),
            operations=dict(sorted(operations.items(), key=lambda kv: -kv[1])),
            tables=dict(sorted(tables.items(), key=lambda kv: -kv[1])),
            fingerprints=tuple(a.to_stats() for a in ranked),
            errors=dict(self.errors),
        )
