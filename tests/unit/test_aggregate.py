"""A scope's aggregates: exact counts and times, percentiles from histograms fed in
bulk, and a bound on what waits to be folded into them."""

from __future__ import annotations

import pytest

from sqlwatch._aggregate import MAX_FINGERPRINTS, MAX_UNFOLDED, OVERFLOW_FINGERPRINT, Aggregator
from sqlwatch.records import StatementInfo


def info(n: int) -> StatementInfo:
    return StatementInfo(
        operation="SELECT",
        tables=("t",),
        fingerprint=f"{n:016x}",
        normalized=f"SELECT c{n} FROM t",
        parse_ok=True,
    )


def waiting(aggregator: Aggregator) -> int:
    return sum(len(a._unfolded) for a in aggregator.fingerprints.values())


def test_what_waits_to_be_folded_is_bounded_per_scope_not_per_fingerprint() -> None:
    aggregator = Aggregator()
    for n in range(4_000):  # each fingerprint far below any per-fingerprint fold
        aggregator.add_counted(info(n), [1_000_000 + n, 2_000_000 + n, 3_000_000 + n], [])
        assert waiting(aggregator) <= MAX_UNFOLDED

    fields: dict[str, object] = {}
    aggregator.contribute(fields)
    assert fields["query_count"] == 12_000
    stats = {s.fingerprint: s for s in fields["fingerprints"]}  # type: ignore[attr-defined]
    one = stats[f"{1234:016x}"]
    assert one.count == 3
    assert one.p50_ms == pytest.approx(2.001234, rel=0.01)
    assert one.max_ms == pytest.approx(3.001234, abs=1e-4)  # reports round to 0.1 µs
    assert one.total_ms == pytest.approx(6.003702, abs=1e-4)


def test_operations_and_tables_count_the_statements_past_the_fingerprint_bound() -> None:
    """The overflow aggregate is one row of ``OTHER`` without tables; the report's
    per-operation and per-table counts still see what each statement was."""
    aggregator = Aggregator()
    for n in range(MAX_FINGERPRINTS):
        aggregator.add_counted(info(n), [1_000], [])
    insert = StatementInfo(
        operation="INSERT",
        tables=("audit", "t"),
        fingerprint="f" * 16,
        normalized="INSERT INTO audit SELECT * FROM t",
        parse_ok=True,
    )
    aggregator.add_counted(insert, [1_000, 2_000], [])
    aggregator.add_counted(info(MAX_FINGERPRINTS + 1), [1_000], [])

    fields: dict[str, object] = {}
    aggregator.contribute(fields)
    assert fields["query_count"] == MAX_FINGERPRINTS + 3
    assert fields["operations"] == {"SELECT": MAX_FINGERPRINTS + 1, "INSERT": 2}
    assert fields["tables"] == {"t": MAX_FINGERPRINTS + 3, "audit": 2}
    (overflow,) = [s for s in fields["fingerprints"] if s.fingerprint == OVERFLOW_FINGERPRINT]  # type: ignore[attr-defined]
    assert overflow.count == 3
