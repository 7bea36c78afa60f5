"""Memory is bounded: aggregates grow with distinct fingerprints, not with statements.

200,000 statements (four statement shapes, parameters that never repeat) go
through the process-wide scope. tracemalloc traces the last 20,000 of them:
anything sqlwatch kept per statement would still be alive at the end, so what
was allocated in that window and survives it is what sqlwatch grows by. (The
whole run under tracemalloc would take minutes; a leak of a few bytes per
statement shows just as well in the last 20,000.)
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

import sqlwatch
from tests.integration.helpers import bytes_that_outlive

STATEMENTS = 200_000
TRACED = 20_000
MAX_STATEMENTS = 1_000
QUERIES = ["SELECT ?", "SELECT ? + 1", "SELECT abs(?)", "SELECT ? * 2"]


def test_two_hundred_thousand_statements_in_bounded_memory() -> None:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    # no exporters: a DEBUG log level would otherwise keep 20,000 log records alive
    sqlwatch.instrument(engine, max_statements=MAX_STATEMENTS, exporters=())

    def run(start: int, stop: int) -> None:
        for i in range(start, stop):
            conn.exec_driver_sql(QUERIES[i % 4], (i,))

    try:
        with engine.connect() as conn:
            run(0, STATEMENTS - TRACED)
            ours, everything = bytes_that_outlive(lambda: run(STATEMENTS - TRACED, STATEMENTS))
            report = sqlwatch.report()
    finally:
        engine.dispose()

    assert report.query_count == STATEMENTS
    assert len(report.statements) == MAX_STATEMENTS
    assert report.dropped_statements == STATEMENTS - MAX_STATEMENTS
    assert sorted(f.count for f in report.fingerprints) == [STATEMENTS // 4] * 4
    # generous bounds (about 50 kB is normal): keeping one small tuple per statement
    # would take more than 2 MB
    assert ours < 400_000, f"sqlwatch kept {ours:,} bytes of 20,000 statements"
    assert everything < 1_000_000, f"{everything:,} bytes outlived 20,000 statements"


def test_distinct_sql_from_paths_that_take_turns_in_bounded_memory() -> None:
    """Inlined literals make every statement a new SQL string; run from two APIs in
    turns, each misses the call-site finder's last exit. What the finder remembers
    per statement must stay bounded too."""
    total, traced = 30_000, 10_000
    engine = create_engine("sqlite://", poolclass=StaticPool)
    sqlwatch.instrument(engine, max_statements=MAX_STATEMENTS, exporters=())

    def run(start: int, stop: int) -> None:
        for i in range(start, stop):
            if i % 2:
                conn.exec_driver_sql(f"SELECT {i} AS n, 'row {i}' AS label")
            else:
                session.execute(text(f"SELECT {i} AS n, 'row {i}' AS label"))

    try:
        with engine.connect() as conn, Session(engine) as session:
            run(0, total - traced)
            ours, _ = bytes_that_outlive(lambda: run(total - traced, total))
            report = sqlwatch.report()
    finally:
        engine.dispose()

    assert report.query_count == total
    # the caches keyed by SQL are bounded (about 260 kB of them fill in this window);
    # keeping anything per statement takes more than 1.5 MB
    assert ours < 600_000, f"sqlwatch kept {ours:,} bytes of {traced:,} statements"
