"""An exporter that raises stops neither the other exporters nor the application.

The suite makes internal errors raise (conftest); these tests switch that off,
as production runs, to see the error logged and swallowed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.exporters import Exporter, StatementEvent, resolve_exporters
from sqlwatch.exporters.log import LoggingExporter
from sqlwatch.records import Statement
from sqlwatch.report import Report
from tests.models import Base, User, seed


class Broken(Exporter):
    """Raises from every hook it has."""

    def __init__(self) -> None:
        self.calls = 0

    def statement_enabled(self) -> bool:
        return True

    def on_statement(self, event: StatementEvent) -> None:
        self.calls += 1
        raise RuntimeError("on_statement is broken")

    def on_slow_query(self, statement: Statement, scope: str) -> None:
        self.calls += 1
        raise RuntimeError("on_slow_query is broken")

    def on_scope_end(self, report: Report) -> None:
        self.calls += 1
        raise RuntimeError("on_scope_end is broken")


class Counting(Exporter):
    def __init__(self) -> None:
        self.statements = 0
        self.slow = 0
        self.ends = 0

    def statement_enabled(self) -> bool:
        return True

    def on_statement(self, event: StatementEvent) -> None:
        self.statements += 1

    def on_slow_query(self, statement: Statement, scope: str) -> None:
        self.slow += 1

    def on_scope_end(self, report: Report) -> None:
        self.ends += 1


@pytest.fixture
def db(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    return engine


@pytest.mark.usefixtures("production_mode")
def test_a_raising_exporter_stops_neither_the_others_nor_the_app(
    db: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sqlwatch")
    broken, after = Broken(), Counting()
    target = tmp_path / "report.json"
    sqlwatch.instrument(db, exporters=[broken, "logging", after], slow_query_ms=0)
    watch = sqlwatch.watch(exporters=[broken, f"json:{target}", after])
    with watch as w, db.connect() as connection:
        names = connection.execute(select(User.name).order_by(User.id)).scalars().all()
        with pytest.raises(Exception) as raised:  # the driver's own error
            connection.execute(text("SELECT * FROM no_such_table"))
    assert names == ["user0", "user1", "user2"]
    assert type(raised.value).__name__ in {"OperationalError", "ProgrammingError"}
    assert w.query_count == 2
    assert broken.calls > 0
    # the exporters after the broken one still ran, every hook of them
    assert after.statements == 2
    assert after.slow >= 2
    assert after.ends == 1
    assert sqlwatch.Report.load(target).query_count == 2
    assert any(r.getMessage().startswith("slow query") for r in caplog.records)
    errors = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert errors
    assert all(r.levelno == logging.ERROR for r in errors)
    assert any("Broken.on_statement" in r.getMessage() for r in errors)


class BrokenCheck(Exporter):
    """Raises from the check sqlwatch makes for every statement."""

    def statement_enabled(self) -> bool:
        raise RuntimeError("statement_enabled is broken")


@pytest.mark.usefixtures("production_mode")
def test_a_raising_statement_check_keeps_no_statement_from_the_others(db: Engine) -> None:
    """Every path a statement takes to the exporters: with a record (in a watch, or
    while the process-wide report keeps records) and counted in bulk (outside any
    scope, once it is full)."""
    after = Counting()
    sqlwatch.instrument(db, exporters=[BrokenCheck(), after], max_statements=1)
    with db.connect() as connection:
        for _ in range(2):
            connection.execute(text("SELECT 1")).scalar()
        sqlwatch.report()  # the process-wide report is full: counting from now on
        for _ in range(4):  # counted from the third run of the same SQL
            connection.execute(text("SELECT 1")).scalar()
        with sqlwatch.watch():
            for _ in range(2):
                connection.execute(text("SELECT 2")).scalar()

    assert sqlwatch.report().query_count == 8
    assert after.statements == 8


def test_unknown_exporter_name_is_a_value_error_naming_the_valid_ones(db: Engine) -> None:
    with pytest.raises(ValueError, match=r"unknown exporter 'otlp'.*logging, otel, json:PATH"):
        sqlwatch.instrument(db, exporters=["otlp"])
    with pytest.raises(ValueError, match=r"logging, otel, json:PATH"):
        sqlwatch.watch(exporters=["jsonl:out.json"]).__enter__()
    with pytest.raises(ValueError, match=r"needs a path"):
        resolve_exporters(["json:"])
    with pytest.raises(ValueError, match=r"neither an Exporter nor a name"):
        resolve_exporters([42])

    class OnlyScopeEnd:  # some hooks, not an Exporter: would fail on every statement
        def on_scope_end(self, report: object) -> None:
            pass

    with pytest.raises(ValueError, match=r"subclass sqlwatch.exporters.Exporter"):
        sqlwatch.watch(exporters=[OnlyScopeEnd()])
    (shared,) = resolve_exporters(["logging"])
    assert isinstance(shared, LoggingExporter)
    assert resolve_exporters(["logging", "logging"]) == (shared,)
