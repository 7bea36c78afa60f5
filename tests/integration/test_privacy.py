"""With default options, no literal value and no bound parameter leaves the process.

One application run, every exporter on: OpenTelemetry spans and metrics, the
``sqlwatch`` log at DEBUG through ``JSONFormatter``, JSON reports of a watch and
of the process. Two secrets go to the database, one as a literal in the SQL
text and one as a bound parameter; neither may appear in anything exported,
while the statements themselves must (or the test would prove nothing).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.exporters import Exporter, StatementEvent
from sqlwatch.exporters.json_report import JSONExporter
from tests.integration.helpers import json_log_stream
from tests.integration.otel_helpers import OTel, otel_sdk
from tests.models import Base, User, seed


@pytest.fixture
def otel() -> Iterator[OTel]:
    yield from otel_sdk()


LITERAL_SECRET = "hunter2"
BOUND_SECRET = "s3cr3t-b0und-value"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    yield from json_log_stream()


def test_secrets_stay_in_the_process(
    engine: Engine, otel: OTel, log_lines: io.StringIO, tmp_path: Path
) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    process_json = JSONExporter(tmp_path / "process.json")
    watch_json = tmp_path / "watch.json"
    # slow_query_ms=0: every statement is also a slow-query warning and report entry
    sqlwatch.instrument(
        engine, exporters=["logging", otel.exporter, process_json], slow_query_ms=0
    )
    literal = f"SELECT id, name FROM users WHERE name = '{LITERAL_SECRET}'"
    watch = sqlwatch.watch(exporters=[f"json:{watch_json}"], slow_query_ms=0)
    with otel.tracer.start_as_current_span("request"), watch, engine.connect() as connection:
        for _ in range(2):  # twice: a duplicate, with its SQL
            connection.execute(text(literal)).all()
            connection.execute(select(User).where(User.name == BOUND_SECRET)).all()
            connection.execute(
                text("SELECT id FROM users WHERE name = :pw"), {"pw": BOUND_SECRET}
            ).all()
        with pytest.raises(Exception):  # noqa: B017  (the driver's own error)
            connection.execute(text(f"SELECT * FROM missing WHERE password = '{LITERAL_SECRET}'"))
    process_json.flush()

    exported: dict[str, str] = {}
    spans = otel.spans()
    exported["spans"] = json.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [(e.name, dict(e.attributes or {})) for e in s.events],
                "status": s.status.description,
            }
            for s in otel.memory.get_finished_spans()
        ],
        default=str,
    )
    metrics = otel.reader.get_metrics_data()
    assert metrics is not None
    exported["metrics"] = metrics.to_json()
    exported["logs"] = log_lines.getvalue()
    exported["watch report"] = watch_json.read_text()
    exported["process report"] = (tmp_path / "process.json").read_text()

    for where, content in exported.items():
        assert LITERAL_SECRET not in content, where
        assert BOUND_SECRET not in content, where

    # what was exported is the statements, sanitized, not nothing
    assert any(s.name == "SELECT missing" for s in spans)
    assert "name = ?" in exported["spans"]
    assert "db.client.operation.duration" in exported["metrics"]
    assert '"kind": "statement"' in exported["logs"]
    assert '"kind": "slow_query"' in exported["logs"]
    watch_report = sqlwatch.Report.load(watch_json)
    assert watch_report.query_count == 7
    assert watch_report.duplicates
    assert any("name = ?" in s.sql for s in watch_report.statements)
    assert sqlwatch.Report.load(tmp_path / "process.json").query_count >= 7


class RecordingExporter(Exporter):
    """Keeps the statements it is given, parameters and all."""

    def __init__(self) -> None:
        self.statements: list[sqlwatch.Statement] = []

    def statement_enabled(self) -> bool:
        return True

    def on_statement(self, event: StatementEvent) -> None:
        self.statements.append(event.statement)


def test_a_watch_that_keeps_parameters_gives_them_only_to_its_own_exporters(
    engine: Engine, log_lines: io.StringIO
) -> None:
    """``capture_params`` is chosen per configuration: a watch that keeps
    parameters for its report (and its own exporter) must not hand them to the
    engine's log, which was set up without them."""
    engine_exporter, watch_exporter = RecordingExporter(), RecordingExporter()
    sqlwatch.instrument(engine, exporters=["logging", engine_exporter])
    watch = sqlwatch.watch(capture_params=True, exporters=[watch_exporter])
    with watch as w, engine.connect() as connection:
        connection.execute(text("SELECT :pw"), {"pw": BOUND_SECRET}).all()

    assert BOUND_SECRET not in log_lines.getvalue()
    assert '"kind": "statement"' in log_lines.getvalue()  # the statement was logged
    (seen_by_engine,) = engine_exporter.statements
    assert seen_by_engine.params is None
    (seen_by_watch,) = watch_exporter.statements
    assert BOUND_SECRET in str(seen_by_watch.params)
    assert BOUND_SECRET in str(w.queries[0].params)  # the watch's own report keeps them
