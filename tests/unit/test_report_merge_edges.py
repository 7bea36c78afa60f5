"""``Report.merge`` (pytest-xdist workers, several saved reports): call sites ranked
by frequency across workers, and the start of a report from another tool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

import sqlwatch
from sqlwatch import Report


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'merge.db'}")
    sqlwatch.instrument(engine, exporters=())
    yield engine
    engine.dispose()


def hot(connection: Connection) -> None:
    connection.execute(text("SELECT 0"))


def test_merged_call_sites_are_the_most_frequent_first(engine: Engine) -> None:
    with engine.connect() as connection:
        with sqlwatch.watch("worker 1") as one:  # five call sites, one statement each
            connection.execute(text("SELECT 1"))
            connection.execute(text("SELECT 2"))
            connection.execute(text("SELECT 3"))
            connection.execute(text("SELECT 4"))
            connection.execute(text("SELECT 5"))
        with sqlwatch.watch("worker 2") as two:
            for _ in range(100):
                hot(connection)
    (stats,) = one.report.merge(two.report).fingerprints
    assert stats.count == 105
    assert stats.call_sites[0].endswith(" in hot")


def test_merging_a_report_whose_start_has_no_time_zone() -> None:
    written = Report(started_at="2024-01-01T00:00:00Z", duration_ms=1_000.0)
    naive = Report(started_at="2024-01-01T00:00:01", duration_ms=1_000.0)
    merged = written.merge(naive)
    assert merged.started_at == "2024-01-01T00:00:00Z"
