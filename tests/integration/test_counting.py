"""Outside any scope, once the process-wide report keeps no more records.

Statements then skip the per-statement record and are counted in bulk
(``sqlwatch._pipeline.Counted``). Whatever the path, the process-wide report
must say the same: every statement counted once, per fingerprint, with its call
sites; slow and failed statements still recorded; scoped statements untouched.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import tracemalloc

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

import sqlwatch
from sqlwatch.exporters import LoggingExporter
from tests.integration.helpers import install_sleep, sleep_sql
from tests.models import Base

KEPT = 5
SQLWATCH_FILES = os.path.join(os.path.dirname(sqlwatch.__file__), "*")


@pytest.fixture
def db(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    return engine


def counting(db: Engine, **options: object) -> None:
    sqlwatch.instrument(db, max_statements=KEPT, exporters=(), **options)


def select_one(db: Engine, times: int) -> None:
    with db.connect() as connection:
        for _ in range(times):
            connection.execute(text("SELECT 1")).all()  # one line: one call site


def select_two(db: Engine, times: int) -> None:
    with db.connect() as connection:
        for _ in range(times):
            connection.execute(text("SELECT 2")).all()


def test_every_statement_is_counted_once_with_its_call_sites(db: Engine) -> None:
    counting(db)
    select_one(db, 1500)  # more than one fold of the counted durations
    select_two(db, 300)

    report = sqlwatch.report()

    counts = {f.normalized: f for f in report.fingerprints}
    assert counts["SELECT ?"].count == 1800  # literals normalized: one fingerprint
    assert report.query_count == 1800
    assert len(report.statements) == KEPT
    assert report.dropped_statements == 1800 - KEPT
    sites = counts["SELECT ?"].call_sites
    assert any("in select_one" in site for site in sites)
    assert any("in select_two" in site for site in sites)
    assert counts["SELECT ?"].p50_ms > 0
    assert report.total_query_ms == pytest.approx(
        sum(f.total_ms for f in report.fingerprints), rel=1e-3
    )


def test_counts_survive_uninstrument(db: Engine) -> None:
    counting(db)
    select_one(db, 200)

    sqlwatch.uninstrument(db)

    assert sqlwatch.report().query_count == 200


def test_without_call_sites_the_counts_are_the_same(db: Engine) -> None:
    counting(db, capture_call_sites=False)
    select_one(db, 700)

    [stats] = [f for f in sqlwatch.report().fingerprints if f.normalized == "SELECT ?"]
    assert stats.count == 700
    assert stats.call_sites == ()


def test_slow_and_failed_statements_are_still_recorded(db: Engine) -> None:
    install_sleep(db)
    counting(db, slow_query_ms=20)
    select_one(db, 50)
    with db.connect() as connection:
        connection.execute(text(sleep_sql(db, 25))).all()
        connection.execute(text(sleep_sql(db, 25))).all()
        with pytest.raises((OperationalError, ProgrammingError)):
            connection.execute(text("SELECT * FROM no_such_table")).all()

    report = sqlwatch.report()

    assert len(report.slow_queries) == 2
    assert sum(report.errors.values()) == 1  # named by the driver: UndefinedTable...
    assert report.query_count == 53


def test_statements_in_a_watch_keep_their_records(db: Engine) -> None:
    counting(db)
    select_one(db, 100)  # the process-wide report is full: counting has begun

    with sqlwatch.watch() as w:
        select_one(db, 3)
    select_one(db, 100)

    assert w.query_count == 3
    assert [s.sql for s in w.queries] == ["SELECT 1"] * 3
    assert sqlwatch.report().query_count == 203


def test_threads_outside_any_scope_are_all_counted(db: Engine) -> None:
    counting(db)
    select_one(db, 10)
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        select_one(db, 200)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sqlwatch.report().query_count == 10 + 16 * 200


def test_statements_still_reach_a_debug_logger(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    sqlwatch.instrument(db, max_statements=KEPT, exporters=[LoggingExporter()])
    select_one(db, 20)

    with caplog.at_level(logging.DEBUG, logger="sqlwatch"):
        select_one(db, 10)

    logged = [r for r in caplog.records if r.levelno == logging.DEBUG and "SELECT" in r.message]
    assert len(logged) == 10
    assert all("in select_one" in r.message for r in logged)


def test_process_wide_duplicates_come_from_scopes_only(db: Engine) -> None:
    sqlwatch.instrument(db, exporters=())
    with db.connect() as connection:
        for _ in range(3):
            connection.execute(text("SELECT 1")).all()  # no unit of work: not judged
        with sqlwatch.watch():
            for _ in range(2):
                connection.execute(text("SELECT 2")).all()

    duplicates = sqlwatch.report().duplicates

    assert [(d.sql, d.count) for d in duplicates] == [("SELECT 2", 2)]


def test_process_wide_duplicates_are_repeats_within_one_unit_of_work(db: Engine) -> None:
    """Fifty requests that each read the same row once have no duplicate; a request
    that reads it twice has one, and such repeats add up over requests."""
    sqlwatch.instrument(db, exporters=())
    with db.connect() as connection:
        for _ in range(50):
            with sqlwatch.watch():
                connection.execute(text("SELECT 1")).all()
        for _ in range(3):
            with sqlwatch.watch():
                connection.execute(text("SELECT 2")).all()
                connection.execute(text("SELECT 2")).all()
        with sqlwatch.watch(), sqlwatch.watch():  # nested: one unit of work
            connection.execute(text("SELECT 3")).all()
            connection.execute(text("SELECT 3")).all()
            connection.execute(text("SELECT 3")).all()

    duplicates = sqlwatch.report().duplicates

    assert [(d.sql, d.count) for d in duplicates] == [("SELECT 2", 6), ("SELECT 3", 3)]


def test_what_waits_to_be_folded_stays_small(db: Engine) -> None:
    """Many SQL strings counted, the report never read: what waits for the fold is
    bounded per engine, not per string (a list per string could hold a lot). The
    strings differ in a literal only: one fingerprint, so the aggregates stay put."""
    sqlwatch.instrument(db, max_statements=KEPT, exporters=())
    strings = [f"SELECT {n} AS value" for n in range(900)]
    with db.connect() as connection:
        for sql in strings * 3:  # twice to be counted from the third run on
            connection.exec_driver_sql(sql)
        gc.collect()
        tracemalloc.start()
        try:
            for sql in strings * 40:
                connection.exec_driver_sql(sql)
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()

    ours = sum(
        stat.size
        for stat in snapshot.filter_traces([tracemalloc.Filter(True, SQLWATCH_FILES)]).statistics(
            "filename"
        )
    )
    # 36,000 counted statements: a duration and a call site kept for each until a
    # read would be over 3 MB; the fold every 4,096 keeps it to a few hundred KB
    assert ours < 1_000_000, f"sqlwatch holds {ours:,} bytes of counted statements"
    assert sqlwatch.report().query_count == 900 * 43
