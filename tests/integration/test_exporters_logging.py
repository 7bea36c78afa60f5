"""``LoggingExporter`` and ``JSONFormatter`` on real databases (SQLite and PostgreSQL).

Records are read the way an application reads them: through a handler on the
``sqlwatch`` logger (pytest's ``caplog``, or a stream with ``JSONFormatter``).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.exporters.log import LoggingExporter
from tests.integration.helpers import call_site_below, install_sleep, json_log_stream, sleep_sql
from tests.models import Base, User, seed


@pytest.fixture
def db(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    return engine


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The ``sqlwatch`` logger at DEBUG into a ``JSONFormatter`` stream."""
    yield from json_log_stream()


def sqlwatch_records(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "sqlwatch" and getattr(r, "sqlwatch", {}).get("kind") == kind
    ]


def test_each_statement_at_debug_in_one_readable_line(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sqlwatch")
    sqlwatch.instrument(db)  # the process default: exporters=("logging",)
    with sqlwatch.watch() as w, db.connect() as connection:
        site = call_site_below()
        connection.execute(select(User).where(User.name == "user1")).all()
    (record,) = sqlwatch_records(caplog, "statement")
    statement = w.queries[-1]
    assert record.levelno == logging.DEBUG
    assert re.fullmatch(rf"SELECT users \d+\.\d ms \({re.escape(site)}\)", record.getMessage())
    fields = record.sqlwatch  # type: ignore[attr-defined]
    assert fields["summary"] == "SELECT users"
    assert fields["normalized"] == statement.normalized
    assert fields["fingerprint"] == statement.fingerprint
    assert fields["call_site"] == site
    assert fields["engine"] == statement.engine
    assert fields["duration_ms"] == statement.duration_ms
    assert "params" not in fields
    assert "sql" not in fields  # the driver's text may carry literals; normalized does not


def test_capture_params_puts_the_parameters_in_the_record(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sqlwatch")
    sqlwatch.instrument(db, capture_params=True)
    with db.connect() as connection:
        connection.execute(select(User).where(User.name == "user2")).all()
    (record,) = sqlwatch_records(caplog, "statement")
    fields = record.sqlwatch  # type: ignore[attr-defined]
    assert "user2" in json.dumps(fields["params"])
    assert fields["sql"].startswith("SELECT")


def test_logger_above_debug_gets_no_statement_records(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlwatch")
    exporter = LoggingExporter()
    assert exporter.statement_enabled() is False
    sqlwatch.instrument(db, exporters=[exporter])
    with db.connect() as connection:
        connection.execute(select(User.id)).all()
    assert sqlwatch_records(caplog, "statement") == []


def test_slow_query_warning_names_the_summary_not_the_sql(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    install_sleep(db)
    caplog.set_level(logging.WARNING, logger="sqlwatch")
    sqlwatch.instrument(db, slow_query_ms=15)
    with db.connect() as connection:
        connection.execute(select(User.id)).all()  # fast: no warning
        site = call_site_below()
        connection.execute(text(sleep_sql(db, 20)))
    (record,) = sqlwatch_records(caplog, "slow_query")
    assert record.levelno == logging.WARNING
    assert re.fullmatch(
        rf"slow query \d+\.\d ms SELECT \({re.escape(site)}\)", record.getMessage()
    )
    fields = record.sqlwatch  # type: ignore[attr-defined]
    assert fields["scope"] == "process"
    assert fields["summary"] == "SELECT"
    assert fields["duration_ms"] >= 15


def test_a_repeated_slow_query_is_one_warning_per_scope(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sqlwatch")
    sqlwatch.instrument(db, exporters=())
    with db.connect() as connection:
        for _ in range(2):
            with sqlwatch.watch("request", exporters=("logging",), slow_query_ms=0):
                for name in ("user0", "user1", "user2", "user0"):
                    connection.execute(select(User).where(User.name == name)).all()
                connection.execute(select(User.id)).all()  # another finding
    warnings = sqlwatch_records(caplog, "slow_query")
    assert [r.getMessage().split(" ms ")[1].split(" (")[0] for r in warnings] == [
        "SELECT users",
        "SELECT users",
        "SELECT users",
        "SELECT users",
    ]
    assert len({r.sqlwatch["fingerprint"] for r in warnings}) == 2  # type: ignore[attr-defined]
    summaries = sqlwatch_records(caplog, "suppressed")
    assert [r.sqlwatch["count"] for r in summaries] == [3, 3]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.INFO for r in summaries)


def test_process_and_watch_report_one_statement_once(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sqlwatch")
    sqlwatch.instrument(db, slow_query_ms=0)
    with sqlwatch.watch(exporters=("logging",), slow_query_ms=0), db.connect() as connection:
        connection.execute(select(User.id)).all()
    assert len(sqlwatch_records(caplog, "slow_query")) == 1


def test_json_formatter_renders_one_object_a_line(db: Engine, stream: io.StringIO) -> None:
    sqlwatch.instrument(db, slow_query_ms=0)
    with db.connect() as connection:
        connection.execute(select(User.id).where(User.name == "user1")).all()
    lines = [line for line in stream.getvalue().splitlines() if line]
    objects = [json.loads(line) for line in lines]
    kinds = [o["sqlwatch"]["kind"] for o in objects if "sqlwatch" in o]
    assert sorted(kinds) == ["slow_query", "statement"]
    by_kind = {o["sqlwatch"]["kind"]: o for o in objects if "sqlwatch" in o}
    statement, slow = by_kind["statement"], by_kind["slow_query"]
    assert statement["level"] == "DEBUG"
    assert slow["level"] == "WARNING"
    assert slow["logger"] == "sqlwatch"
    assert slow["message"].startswith("slow query ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", slow["time"])
    assert slow["sqlwatch"]["summary"] == "SELECT users"
    assert isinstance(slow["sqlwatch"]["tables"], list)
