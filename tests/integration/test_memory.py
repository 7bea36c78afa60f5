"""Memory is bounded: aggregates grow with distinct fingerprints, not with statements.

200,000 statements (four statement shapes, parameters that never repeat) go
through the process-wide scope. tracemalloc traces the last 20,000 of them:
anything sqlwatch kept per statement would still be alive at the end, so what
was allocated in that window and survives it is what sqlwatch grows by. (The
whole run under tracemalloc would take minutes; a leak of a few bytes per
statement shows just as well in the last 20,000.)
"""

from __future__ import annotations

import gc
import os
import tracemalloc

from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

import sqlwatch

STATEMENTS = 200_000
TRACED = 20_000
MAX_STATEMENTS = 1_000
SQLWATCH_FILES = os.path.join(os.path.dirname(sqlwatch.__file__), "*")
QUERIES = ["SELECT ?", "SELECT ? + 1", "SELECT abs(?)", "SELECT ? * 2"]


def test_two_hundred_thousand_statements_in_bounded_memory() -> None:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    # no exporters: a DEBUG log level would otherwise keep 20,000 log records alive
    sqlwatch.instrument(engine, max_statements=MAX_STATEMENTS, exporters=())
    try:
        with engine.connect() as conn:
            for i in range(STATEMENTS - TRACED):
                conn.exec_driver_sql(QUERIES[i % 4], (i,))
            sqlwatch.report()  # process everything pending before tracing starts
            gc.collect()
            tracemalloc.start()
            try:
                for i in range(STATEMENTS - TRACED, STATEMENTS):
                    conn.exec_driver_sql(QUERIES[i % 4], (i,))
                report = sqlwatch.report()
                del report
                gc.collect()
                snapshot = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            report = sqlwatch.report()
    finally:
        engine.dispose()

    assert report.query_count == STATEMENTS
    assert len(report.statements) == MAX_STATEMENTS
    assert report.dropped_statements == STATEMENTS - MAX_STATEMENTS
    assert sorted(f.count for f in report.fingerprints) == [STATEMENTS // 4] * 4

    everything = sum(stat.size for stat in snapshot.statistics("filename"))
    ours = sum(
        stat.size
        for stat in snapshot.filter_traces([tracemalloc.Filter(True, SQLWATCH_FILES)]).statistics(
            "filename"
        )
    )
    # generous bounds (about 50 kB is normal): keeping one small tuple per statement
    # would take more than 2 MB
    assert ours < 400_000, f"sqlwatch kept {ours:,} bytes of 20,000 statements"
    assert everything < 1_000_000, f"{everything:,} bytes outlived 20,000 statements"
