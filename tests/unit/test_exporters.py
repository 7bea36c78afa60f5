"""Exporters without a database: formatting, naming rules, findings, sanitizing."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sqlwatch
from sqlwatch._capture.call_sites import split_call_site
from sqlwatch._capture.sqlcommenter import with_traceparent
from sqlwatch.exporters import log as log_module
from sqlwatch.exporters.log import LoggingExporter
from sqlwatch.exporters.otel import (
    OTelExporter,
    db_system_name,
    error_attributes,
    span_name,
)
from sqlwatch.records import Duplicate, Leak, NPlusOne, ScopeSummary, Statement, StatementInfo
from sqlwatch.report import Report


def _finding(**changes: object) -> NPlusOne:
    fields: dict[str, object] = {
        "fingerprint": "abc123",
        "normalized": "SELECT * FROM addresses WHERE user_id = ?",
        "example_sql": "SELECT * FROM addresses WHERE user_id = 42",
        "count": 12,
        "total_ms": 3.5,
        "call_site": "app/views.py:42 in list_users",
        "relationship": "User.addresses",
        "tables": ("addresses",),
        "suggestion": "Load it with selectinload(User.addresses).",
        "kind": "lazy_load",
    }
    fields.update(changes)
    return NPlusOne(**fields)  # type: ignore[arg-type]


def _statement(**changes: object) -> Statement:
    fields: dict[str, object] = {
        "sql": "SELECT * FROM users WHERE name = 'secret'",
        "operation": "SELECT",
        "tables": ("users",),
        "fingerprint": "f00",
        "normalized": "SELECT * FROM users WHERE name = ?",
        "duration_ms": 812.4,
        "rowcount": None,
        "executemany": False,
        "started_at": "2025-01-01T00:00:00.000000Z",
        "engine": "sqlite://",
        "call_site": "app/views.py:42 in list_users",
        "relationship": None,
        "error": None,
    }
    fields.update(changes)
    return Statement(**fields)  # type: ignore[arg-type]


def _info(summary: str, operation: str = "SELECT") -> StatementInfo:
    return StatementInfo(
        operation=operation,
        tables=(),
        fingerprint="0",
        normalized="",
        parse_ok=True,
        summary=summary,
    )


# -- JSONFormatter ----------------------------------------------------------------


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_formatter_plain_record() -> None:
    line = sqlwatch.JSONFormatter().format(_record("hello %s", "world"))
    payload = json.loads(line)
    assert payload["message"] == "hello world"
    assert payload["level"] == "INFO"
    assert payload["logger"] == "app"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["time"])
    assert "\n" not in line


def test_json_formatter_keeps_extras_and_stringifies_the_rest() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    record = _record("x", sqlwatch={"kind": "leak", "tables": ["a"]}, request_id=7, obj=Opaque())
    payload = json.loads(sqlwatch.JSONFormatter().format(record))
    assert payload["sqlwatch"] == {"kind": "leak", "tables": ["a"]}
    assert payload["request_id"] == 7
    assert payload["obj"] == "opaque!"
    assert "args" not in payload
    assert "msg" not in payload


def _strict_json(line: str) -> object:
    def reject(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=reject)


def test_json_formatter_writes_strict_json_whatever_the_extra_values() -> None:
    """An application's own records pass through the same handler: values JSON
    cannot hold (NaN, tuple keys, a structure holding itself) must not make the
    line unreadable or the formatter raise."""
    circular: dict[str, object] = {}
    circular["self"] = circular
    extra = {
        "ratio": float("nan"),
        "limit": float("-inf"),
        "by_pair": {(1, 2): "v"},
        "tags": {"a"},
        "raw": b"\xff",
        "loop": circular,
        "sqlwatch": {"duration_ms": float("inf")},
    }
    record = logging.getLogger("app").makeRecord(
        "app", logging.INFO, __file__, 1, "done %s", ("job",), None, extra=extra
    )
    line = sqlwatch.JSONFormatter().format(record)
    data = _strict_json(line)
    assert isinstance(data, dict)
    assert data["message"] == "done job"
    assert data["ratio"] == "NaN"
    assert data["limit"] == "-Infinity"
    assert data["by_pair"] == {"(1, 2)": "v"}
    assert data["tags"] == ["a"]
    assert data["raw"] == "b'\\xff'"
    assert data["loop"] == {"self": "..."}
    assert data["sqlwatch"] == {"duration_ms": "Infinity"}


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("app/views.py:42 in list_users", ("app/views.py", 42, "list_users")),
        ("/srv/work in progress/app.py:7 in main", ("/srv/work in progress/app.py", 7, "main")),
        ("<string>:3 in <module>", ("<string>", 3, "<module>")),
    ],
)
def test_split_call_site(text: str, parts: tuple[str, int, str]) -> None:
    assert split_call_site(text) == parts


def test_json_formatter_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    payload = json.loads(sqlwatch.JSONFormatter().format(record))
    assert "ValueError: boom" in payload["exception"]
    assert payload["level"] == "ERROR"


# -- LoggingExporter hooks ---------------------------------------------------------


class Records:
    """The ``sqlwatch`` records of the test's call phase."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter([r for r in self.caplog.records if r.name == "sqlwatch"])


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Records:
    caplog.set_level(logging.INFO, logger="sqlwatch")
    return Records(caplog)


def test_n_plus_one_warning_once_per_scope(records: Records) -> None:
    exporter = LoggingExporter()
    exporter.on_n_plus_one(_finding(), "GET /users")
    exporter.on_n_plus_one(_finding(count=20), "GET /users")  # the same finding, grown
    exporter.on_n_plus_one(_finding(), "GET /orders")  # another scope
    exporter.on_n_plus_one(_finding(call_site="app/other.py:1 in f"), "GET /users")
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings[:1]] == [
        "N+1 User.addresses: 12 queries (app/views.py:42 in list_users). "
        "Load it with selectinload(User.addresses)."
    ]
    assert len(warnings) == 3
    fields = warnings[0].sqlwatch  # type: ignore[attr-defined]
    assert fields["kind"] == "n_plus_one"
    assert fields["scope"] == "GET /users"
    assert "example_sql" not in fields  # literal values live there


def test_n_plus_one_without_relationship_names_the_summary(
    records: Records,
) -> None:
    LoggingExporter().on_n_plus_one(_finding(relationship=None, kind="repeated_statement"), "s")
    (record,) = records
    assert record.getMessage().startswith("N+1 SELECT addresses: 12 queries")


def test_leak_warning(records: Records) -> None:
    exporter = LoggingExporter()
    leak = Leak(
        engine="sqlite://", kind="unreturned", held_ms=1234.5, call_site="app/db.py:9 in f"
    )
    exporter.on_leak(leak, "process")
    exporter.on_leak(leak, "process")
    (record,) = records
    assert record.getMessage() == (
        "connection leak (unreturned) on sqlite://, held 1234.5 ms (app/db.py:9 in f)"
    )
    assert record.sqlwatch["kind"] == "leak"  # type: ignore[attr-defined]


def test_slow_query_message_and_suppressed_summary(records: Records) -> None:
    exporter = LoggingExporter()
    for n in range(4):
        exporter.on_slow_query(_statement(started_at=f"2025-01-01T00:00:0{n}.000000Z"), "job")
    exporter.on_scope_end(Report(name="job"))
    exporter.on_scope_end(Report(name="job"))  # nothing left to say
    messages = [r.getMessage() for r in records]
    assert messages == [
        "slow query 812.4 ms SELECT users (app/views.py:42 in list_users)",
        "3 repeated warnings not logged in scope job (see its report)",
    ]
    assert "secret" not in json.dumps(next(iter(records)).sqlwatch)  # type: ignore[attr-defined]


def test_deduplication_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch, records: Records
) -> None:
    monkeypatch.setattr(log_module, "_MAX_KEYS", 10)
    exporter = LoggingExporter()
    for n in range(25):
        exporter.on_leak(Leak(engine="e", kind="long_held", held_ms=1, call_site=f"f:{n}"), "s")
    assert exporter._keys <= 10
    assert sum(len(keys) for keys in exporter._seen.values()) <= 10
    assert len(list(records)) == 25  # every distinct finding was logged


# -- OpenTelemetry naming rules ------------------------------------------------------


def test_span_name_is_the_summary_capped_at_255_without_cutting_a_name() -> None:
    assert span_name(_info("SELECT orders users"), batch=False) == "SELECT orders users"
    assert span_name(_info("INSERT users", "INSERT"), batch=True) == "BATCH INSERT users"
    long = "SELECT " + " ".join(f"table_{n:03d}" for n in range(40))
    name = span_name(_info(long), batch=False)
    assert len(name) <= 255
    assert long.startswith(name)
    assert long[len(name)] == " "  # cut between two names
    assert span_name(_info("", "VACUUM"), batch=False) == "VACUUM"


def test_db_system_names() -> None:
    assert db_system_name("postgresql") == "postgresql"
    assert db_system_name("sqlite") == "sqlite"
    assert db_system_name("mssql") == "microsoft.sql_server"
    assert db_system_name("oracle") == "oracle.db"
    assert db_system_name("mysql") == "mysql"
    assert db_system_name("duckdb") == "duckdb"


def test_error_attributes() -> None:
    import psycopg.errors

    assert error_attributes(psycopg.errors.UndefinedTable) == {
        "error.type": "psycopg.errors.UndefinedTable",
        "db.response.status_code": "42P01",
    }
    assert error_attributes(TimeoutError) == {"error.type": "TimeoutError"}


def test_n_plus_one_event_and_counter_on_the_current_span() -> None:
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    exporter = OTelExporter(tracer_provider, meter_provider)
    exporter.on_n_plus_one(_finding(), "outside")  # no current span: counted only
    with tracer_provider.get_tracer("t").start_as_current_span("GET /users"):
        exporter.on_n_plus_one(_finding(), "GET /users")
    (span,) = memory.get_finished_spans()
    (event,) = span.events
    assert event.name == "sqlwatch.n_plus_one"
    assert dict(event.attributes or {}) == {
        "sqlwatch.n_plus_one.kind": "lazy_load",
        "sqlwatch.n_plus_one.relationship": "User.addresses",
        "sqlwatch.n_plus_one.count": 12,
        "sqlwatch.n_plus_one.total_ms": 3.5,
        "sqlwatch.n_plus_one.suggestion": "Load it with selectinload(User.addresses).",
        "sqlwatch.scope": "GET /users",
        "sqlwatch.fingerprint": "abc123",
        "sqlwatch.call_site": "app/views.py:42 in list_users",
        "db.query.text": "SELECT * FROM addresses WHERE user_id = ?",
        "code.file.path": os.path.abspath("app/views.py"),  # absolute, as on spans
        "code.line.number": 42,
        "code.function.name": "list_users",
    }
    data = reader.get_metrics_data()
    assert data is not None
    (metric,) = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "sqlwatch.n_plus_one.count"
    ]
    assert sum(p.value for p in metric.data.data_points) == 2
    tracer_provider.shutdown()
    meter_provider.shutdown()


# -- sqlcommenter --------------------------------------------------------------------


def test_traceparent_comment() -> None:
    assert with_traceparent("SELECT 1") == "SELECT 1"  # no current span
    provider = TracerProvider(shutdown_on_exit=False)
    with provider.get_tracer("t").start_as_current_span("s") as span:
        context = span.get_span_context()
        flags = f"{int(context.trace_flags):02x}"
        assert flags in {"01", "03"}  # sampled (and, W3C level 2, a random trace id)
        expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"
        assert with_traceparent("SELECT 1") == f"SELECT 1 /*traceparent='{expected}'*/"
        assert with_traceparent("SELECT 1;\n") == f"SELECT 1 /*traceparent='{expected}'*/;"


# -- sanitizing reports -------------------------------------------------------------


def test_redacted_report_normalizes_every_sql_text() -> None:
    secret = _statement()
    kept = _statement(params=("secret",))
    report = Report(
        statements=(secret, kept),
        slow_queries=(secret,),
        duplicates=(Duplicate(sql=secret.sql, count=2, call_sites=()),),
        n_plus_one=(_finding(),),
        scopes=(
            ScopeSummary(
                name="s",
                runs=1,
                query_count=1,
                total_query_ms=1.0,
                duration_ms=1.0,
                queries_per_run={"p50": 1, "p95": 1, "max": 1},
                n_plus_one=(_finding(),),
            ),
        ),
    )
    clean = report.redacted()
    assert clean.statements[0].sql == "SELECT * FROM users WHERE name = ?"
    assert clean.statements[1].sql == kept.sql  # capture_params: the user's choice
    assert clean.slow_queries[0].sql == clean.statements[0].sql
    assert clean.duplicates[0].sql == clean.statements[0].sql
    assert clean.n_plus_one[0].example_sql == _finding().normalized
    assert clean.scopes[0].n_plus_one[0].example_sql == _finding().normalized
    text = Report(
        statements=(secret,), duplicates=report.duplicates, n_plus_one=report.n_plus_one
    ).to_json()  # the JSON boundary redacts by itself
    assert "'secret'" not in text
    assert "= 42" not in text
