"""``Report.merge``: what combining pytest-xdist workers (or two runs) must get right."""

from __future__ import annotations

from dataclasses import replace

from sqlwatch import (
    Duplicate,
    FingerprintStats,
    NPlusOne,
    PoolStats,
    Report,
    Resources,
    ScopeSummary,
    SessionStats,
    Statement,
    UnusedEagerLoad,
)
from sqlwatch._histogram import LogHistogram


def statement(sql: str, started_at: str = "2025-01-01T00:00:00.000000Z") -> Statement:
    return Statement(
        sql=sql,
        operation="SELECT",
        tables=("users",),
        fingerprint="ab12",
        normalized=sql,
        duration_ms=1.0,
        rowcount=None,
        executemany=False,
        started_at=started_at,
        engine="sqlite://",
        call_site="app.py:1 in f",
        relationship=None,
        error=None,
    )


def stats(fingerprint: str, durations_ns: list[int], *sites: str) -> FingerprintStats:
    histogram = LogHistogram()
    for duration in durations_ns:
        histogram.add(duration)
    total_ms = histogram.total_ns / 1e6
    return FingerprintStats(
        fingerprint=fingerprint,
        normalized=f"SELECT {fingerprint}",
        operation="SELECT",
        tables=("users",),
        count=len(durations_ns),
        total_ms=round(total_ms, 4),
        mean_ms=round(total_ms / len(durations_ns), 4),
        p50_ms=round(histogram.quantile_ns(0.5) / 1e6, 4),
        p95_ms=round(histogram.quantile_ns(0.95) / 1e6, 4),
        p99_ms=round(histogram.quantile_ns(0.99) / 1e6, 4),
        max_ms=round(histogram.max_ns / 1e6, 4),
        call_sites=sites,
        histogram=histogram.items(),
    )


def finding(count: int, call_site: str = "app.py:9 in loop") -> NPlusOne:
    return NPlusOne(
        fingerprint="cd34",
        normalized="SELECT addresses WHERE user_id = ?",
        example_sql="SELECT ... WHERE user_id = ?",
        count=count,
        total_ms=float(count),
        call_site=call_site,
        relationship="User.addresses",
        tables=("addresses",),
        suggestion="use selectinload(User.addresses)",
        kind="lazy_load",
    )


def pool(**changes: object) -> PoolStats:
    values: dict[str, object] = {
        "engine": "db",
        "pool_class": "QueuePool",
        "size": 5,
        "max_overflow": 10,
        "checked_out": 1,
        "peak_checked_out": 2,
        "checkouts": 10,
        "checkins": 9,
        "connects": 2,
        "invalidations": 0,
        "timeouts": 1,
        "wait_ms": {"p50": 0.1, "p95": 0.5, "max": 1.0},
        "hold_ms": {"p50": 2.0, "p95": 5.0, "max": 9.0},
    }
    values.update(changes)
    return PoolStats(**values)  # type: ignore[arg-type]


def scope(name: str, runs: int, queries: int, per_run_max: float) -> ScopeSummary:
    return ScopeSummary(
        name=name,
        runs=runs,
        query_count=queries,
        total_query_ms=1.5,
        duration_ms=10.0,
        queries_per_run={"p50": 1.0, "p95": per_run_max, "max": per_run_max},
    )


def test_counts_add_up() -> None:
    a = Report(
        name="tests",
        query_count=3,
        total_query_ms=1.25,
        operations={"SELECT": 2, "INSERT": 1},
        tables={"users": 3},
        statements=(statement("SELECT 1"),),
        dropped_statements=2,
        errors={"IntegrityError": 1},
        sessions=SessionStats(
            opened=2, closed=1, unclosed=1, unclosed_call_sites=("a.py:1 in f",)
        ),
        resources=Resources(rss_start_bytes=100, rss_end_bytes=150, cpu_s=0.5, rss_peak_bytes=160),
    )
    b = Report(
        name="tests",
        query_count=4,
        total_query_ms=2.5,
        operations={"SELECT": 4},
        tables={"users": 1, "tags": 3},
        statements=(statement("SELECT 2"),),
        dropped_statements=1,
        errors={"IntegrityError": 2, "OperationalError": 1},
        sessions=SessionStats(opened=1, closed=1),
        resources=Resources(rss_start_bytes=90, rss_end_bytes=200, cpu_s=0.25, rss_peak_bytes=210),
    )

    merged = a.merge(b)

    assert merged.name == "tests"
    assert merged.query_count == 7
    assert merged.total_query_ms == 3.75
    assert merged.operations == {"SELECT": 6, "INSERT": 1}
    assert list(merged.operations) == ["SELECT", "INSERT"]  # most frequent first
    assert merged.tables == {"users": 4, "tags": 3}
    assert [s.sql for s in merged.statements] == ["SELECT 1", "SELECT 2"]
    assert merged.dropped_statements == 3
    assert merged.errors == {"IntegrityError": 3, "OperationalError": 1}
    assert merged.sessions == SessionStats(
        opened=3, closed=2, unclosed=1, unclosed_call_sites=("a.py:1 in f",)
    )
    assert merged.resources.cpu_s == 0.75
    assert merged.resources.rss_peak_bytes == 210


def test_merge_does_not_change_either_side() -> None:
    a = Report(query_count=1, operations={"SELECT": 1})
    b = Report(query_count=2, operations={"SELECT": 2})
    a.merge(b)
    assert (a.query_count, a.operations) == (1, {"SELECT": 1})
    assert (b.query_count, b.operations) == (2, {"SELECT": 2})


def test_names_that_differ_are_joined() -> None:
    assert Report(name="gw0").merge(Report(name="gw1")).name == "gw0+gw1"


def test_time_window_covers_both() -> None:
    a = Report(started_at="2025-01-01T00:00:00.000000Z", duration_ms=1000.0)
    b = Report(started_at="2025-01-01T00:00:05.000000Z", duration_ms=2000.0)
    for merged in (a.merge(b), b.merge(a)):
        assert merged.started_at == "2025-01-01T00:00:00.000000Z"
        assert merged.duration_ms == 7000.0
    assert Report().merge(a).started_at == a.started_at  # an empty report has no start


def test_percentiles_come_from_the_merged_histograms() -> None:
    fast = [1_000_000 + i * 1_000 for i in range(90)]  # ~1 ms
    slow = [50_000_000 + i * 100_000 for i in range(10)]  # ~50 ms
    a = Report(fingerprints=(stats("f1", fast, "a.py:1 in f"),))
    b = Report(fingerprints=(stats("f1", slow, "b.py:2 in g", "a.py:1 in f"),))

    [merged] = a.merge(b).fingerprints
    expected = stats("f1", fast + slow)

    assert merged.count == 100
    assert merged.total_ms == expected.total_ms
    assert merged.mean_ms == expected.mean_ms
    assert (merged.p50_ms, merged.p95_ms, merged.p99_ms) == (
        expected.p50_ms,
        expected.p95_ms,
        expected.p99_ms,
    )
    assert merged.max_ms == expected.max_ms
    assert merged.histogram == expected.histogram
    # the slow side alone decides p95 and p99: neither side's own p95 is right
    assert merged.p95_ms > a.fingerprints[0].p95_ms
    assert merged.p50_ms < b.fingerprints[0].p50_ms
    assert merged.call_sites == ("a.py:1 in f", "b.py:2 in g")


def test_fingerprints_of_each_side_are_kept_and_ranked_by_total_time() -> None:
    a = Report(fingerprints=(stats("f1", [1_000_000]),))
    b = Report(fingerprints=(stats("f2", [9_000_000]), stats("f1", [2_000_000])))
    merged = a.merge(b).fingerprints
    assert [f.fingerprint for f in merged] == ["f2", "f1"]
    assert merged[1].count == 2


def test_fingerprints_without_histograms_keep_the_larger_sides_percentiles() -> None:
    big = stats("f1", [5_000_000] * 10)
    small = stats("f1", [1_000_000])
    a = Report(fingerprints=(replace(big, histogram=()),))
    b = Report(fingerprints=(replace(small, histogram=()),))
    [merged] = a.merge(b).fingerprints
    assert merged.count == 11
    assert merged.p50_ms == big.p50_ms
    assert merged.histogram == ()


def test_scopes_merge_by_name() -> None:
    a = Report(scopes=(scope("test_a", 1, 3, 3.0), scope("test_b", 2, 4, 2.0)))
    b = Report(scopes=(scope("test_b", 1, 5, 5.0), scope("test_c", 1, 1, 1.0)))

    merged = {s.name: s for s in a.merge(b).scopes}

    assert set(merged) == {"test_a", "test_b", "test_c"}
    assert merged["test_a"] == a.scopes[0]
    assert (merged["test_b"].runs, merged["test_b"].query_count) == (3, 9)
    assert merged["test_b"].total_query_ms == 3.0
    assert merged["test_b"].duration_ms == 20.0
    assert merged["test_b"].queries_per_run["max"] == 5.0


def test_scopes_n_plus_one_findings_merge_by_loop() -> None:
    a = Report(scopes=(replace(scope("t", 1, 1, 1.0), n_plus_one=(finding(3),)),))
    b = Report(scopes=(replace(scope("t", 1, 1, 1.0), n_plus_one=(finding(4),)),))
    [merged] = a.merge(b).scopes
    [one] = merged.n_plus_one
    assert one.count == 7


def test_n_plus_one_findings_of_one_loop_add_up() -> None:
    a = Report(n_plus_one=(finding(3),))
    b = Report(n_plus_one=(finding(2), finding(5, call_site="other.py:1 in g")))
    merged = a.merge(b).n_plus_one
    assert [(f.call_site, f.count, f.total_ms) for f in merged] == [
        ("app.py:9 in loop", 5, 5.0),
        ("other.py:1 in g", 5, 5.0),
    ]


def test_duplicates_and_unused_eager_loads_merge() -> None:
    a = Report(
        duplicates=(Duplicate(sql="SELECT 1", count=2, call_sites=("a.py:1 in f",)),),
        unused_eager_loads=(UnusedEagerLoad(relationship="User.tags", call_site=None, count=1),),
    )
    b = Report(
        duplicates=(
            Duplicate(sql="SELECT 1", count=3, call_sites=("b.py:2 in g", "a.py:1 in f")),
            Duplicate(sql="SELECT 2", count=4, call_sites=()),
        ),
        unused_eager_loads=(UnusedEagerLoad(relationship="User.tags", call_site=None, count=2),),
    )
    merged = a.merge(b)
    assert merged.duplicates == (
        Duplicate(sql="SELECT 1", count=5, call_sites=("a.py:1 in f", "b.py:2 in g")),
        Duplicate(sql="SELECT 2", count=4, call_sites=()),
    )
    assert merged.unused_eager_loads == (
        UnusedEagerLoad(relationship="User.tags", call_site=None, count=3),
    )


def test_pools_merge_by_engine() -> None:
    a = Report(pools={"db": pool()})
    b = Report(
        pools={
            "db": pool(
                checkouts=5, peak_checked_out=4, wait_ms={"p50": 0.2, "p95": 0.3, "max": 3.0}
            ),
            "replica": pool(engine="replica", timeouts=None),
        }
    )
    merged = a.merge(b).pools
    assert set(merged) == {"db", "replica"}
    assert merged["db"].checkouts == 15
    assert merged["db"].peak_checked_out == 4
    assert merged["db"].timeouts == 2
    assert merged["db"].wait_ms == {"p50": 0.2, "p95": 0.5, "max": 3.0}
    assert merged["replica"] == b.pools["replica"]


def test_merge_is_associative_for_counts() -> None:
    reports = [
        Report(query_count=n, operations={"SELECT": n}, fingerprints=(stats("f", [n * 1000]),))
        for n in (1, 2, 3)
    ]
    left = reports[0].merge(reports[1]).merge(reports[2])
    right = reports[0].merge(reports[1].merge(reports[2]))
    assert left.query_count == right.query_count == 6
    assert left.fingerprints == right.fingerprints
