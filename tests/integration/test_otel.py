"""``OTelExporter`` with the OpenTelemetry SDK, on SQLite and PostgreSQL (sync engines).

Spans go to an ``InMemorySpanExporter`` and metrics to an ``InMemoryMetricReader``
(see ``otel_helpers.py``); statements run through ``sqlwatch.instrument`` and are
read back through ``sqlwatch.watch``, so each span is checked against the
``Statement`` sqlwatch recorded for it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.semconv.attributes import db_attributes
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.exporters.otel import OTelExporter
from tests.integration.helpers import install_sleep, is_sqlite, parse_iso, sleep_sql
from tests.integration.otel_helpers import OTel, otel_sdk
from tests.models import Base, User, seed


@pytest.fixture
def otel() -> Iterator[OTel]:
    yield from otel_sdk()


@pytest.fixture
def db(engine: Engine) -> Engine:
    """The backend with the models' tables and seed data, created before instrumenting."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    return engine


def _line_of(marker: str) -> int:
    """The line of this file holding ``marker`` (for call-site checks)."""
    with open(__file__, encoding="utf-8") as source:
        for number, line in enumerate(source, 1):
            if marker in line and "_line_of" not in line:
                return number
    raise AssertionError(marker)


# -- one statement, every attribute ---------------------------------------------------


def test_select_span_follows_the_database_conventions(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    request_span = otel.tracer.start_as_current_span("GET /users")
    with request_span as request, sqlwatch.watch() as w, db.connect() as connection:
        rows = connection.execute(select(User).where(User.name == "user1")).all()  # SELECT-1
    assert len(rows) == 1
    statement = w.queries[-1]
    span = otel.span("SELECT users")

    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    attributes = dict(span.attributes or {})
    assert attributes["db.system.name"] == ("sqlite" if is_sqlite(db) else "postgresql")
    assert attributes["db.query.summary"] == "SELECT users"
    assert attributes["db.query.text"] == statement.normalized
    assert "user1" not in attributes["db.query.text"]
    assert attributes["sqlwatch.fingerprint"] == statement.fingerprint
    assert attributes["code.file.path"] == __file__
    assert attributes["code.line.number"] == _line_of("# SELECT-1")
    assert attributes["code.function.name"] == "test_select_span_follows_the_database_conventions"
    # the conventions: not parsed out of the query text for SQL
    assert db_attributes.DB_OPERATION_NAME not in attributes
    assert db_attributes.DB_COLLECTION_NAME not in attributes
    assert span.status.status_code is StatusCode.UNSET
    assert otel.open_spans.started == otel.open_spans.ended

    url = db.url
    if is_sqlite(db):
        assert attributes["db.namespace"] == url.database
        assert "server.address" not in attributes
        assert "server.port" not in attributes
    else:
        assert attributes["db.namespace"] == url.database
        assert attributes["server.address"] == url.host
        assert attributes["server.port"] == (url.port or 5432)


def test_span_timing_is_the_statements_own(db: Engine, otel: OTel) -> None:
    install_sleep(db)
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with sqlwatch.watch() as w, db.connect() as connection:
        connection.execute(text(sleep_sql(db, 20)))
    statement = w.queries[-1]
    (span,) = otel.spans()
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.end_time - span.start_time == round(statement.duration_ms * 1e6)
    started = parse_iso(statement.started_at).timestamp()
    assert abs(span.start_time / 1e9 - started) < 2e-6
    assert span.end_time - span.start_time >= 20_000_000


def test_returned_rows_where_the_driver_knows_them(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with db.connect() as connection:
        for limit in (3, 1, 2):  # one call site: attributes cached per site stay per span
            connection.execute(select(User.id).limit(limit)).all()
    spans = otel.spans("SELECT users")
    rows = [dict(s.attributes or {}).get("db.response.returned_rows") for s in spans]
    if is_sqlite(db):  # sqlite3 reports -1 for a SELECT: unknown, so not set
        assert rows == [None, None, None]
    else:
        assert rows == [3, 1, 2]
    assert len({dict(s.attributes or {})["code.line.number"] for s in spans}) == 1


def test_no_parent_span_makes_a_root_span(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with db.connect() as connection:
        connection.execute(select(User.id)).all()
    assert otel.span("SELECT users").parent is None


def test_executemany_follows_the_batch_rules(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with db.begin() as connection:
        connection.execute(
            insert(User.__table__).values(name="single"),  # type: ignore[arg-type]
        )
        connection.execute(
            insert(User.__table__),  # type: ignore[arg-type]
            [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        )
    single = otel.span("INSERT users")
    batch = otel.span("BATCH INSERT users")
    assert "db.operation.batch.size" not in (single.attributes or {})
    assert (batch.attributes or {})["db.operation.batch.size"] == 3
    assert (batch.attributes or {})["db.query.summary"] == "BATCH INSERT users"


def test_a_batch_sent_in_pages_gives_each_page_its_own_size(db: Engine, otel: OTel) -> None:
    """SQLAlchemy's "insertmanyvalues" sends a large batch as several INSERTs of
    ``insertmanyvalues_page_size`` rows: each span counts its own rows."""
    sqlwatch.instrument(db, exporters=[otel.exporter])
    users = User.__table__
    with db.begin() as connection:
        rows = connection.execution_options(insertmanyvalues_page_size=3).execute(
            insert(users).returning(users.c.id),  # type: ignore[attr-defined]
            [{"name": f"paged{i}"} for i in range(5)],
        )
        assert len(rows.all()) == 5
    pages = otel.spans("BATCH INSERT users")
    assert [(s.attributes or {})["db.operation.batch.size"] for s in pages] == [3, 2]


def test_failed_statement_has_error_status_and_type(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with db.connect() as connection, pytest.raises(Exception) as raised:
        connection.execute(text("SELECT * FROM no_such_table"))
    driver_error = type(raised.value.orig)  # type: ignore[attr-defined]
    span = otel.span("SELECT no_such_table")
    attributes = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is None  # messages may quote values: never exported
    assert attributes["error.type"] == f"{driver_error.__module__}.{driver_error.__qualname__}"
    if is_sqlite(db):
        assert attributes["error.type"] == "sqlite3.OperationalError"
        assert "db.response.status_code" not in attributes
    else:
        assert attributes["db.response.status_code"] == "42P01"  # undefined_table
    assert not span.events  # no exception event: its message could carry data
    (point,) = [
        p
        for p in otel.collect()["db.client.operation.duration"].data.data_points
        if p.attributes.get("error.type")
    ]
    assert point.attributes["error.type"] == attributes["error.type"]


def test_span_min_duration_limits_spans_not_metrics(db: Engine, otel: OTel) -> None:
    install_sleep(db)
    sqlwatch.instrument(db, exporters=[otel.exporter], span_min_duration_ms=30)
    with db.connect() as connection:
        connection.execute(select(User.id)).all()
        connection.execute(text(sleep_sql(db, 40)))
    spans = otel.spans()
    assert [s.name for s in spans] == ["SELECT"]
    assert spans[0].end_time - spans[0].start_time >= 30_000_000  # type: ignore[operator]
    duration = otel.collect()["db.client.operation.duration"]
    counted = {p.attributes["db.query.summary"]: p.count for p in duration.data.data_points}
    assert counted["SELECT users"] == 1
    assert counted["SELECT"] == 1


def test_duration_histogram_in_seconds_with_convention_attributes(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with sqlwatch.watch() as w, db.connect() as connection:
        for name in ("user0", "user1", "user2"):
            connection.execute(select(User).where(User.name == name)).all()
    statements = [s for s in w.queries if s.operation == "SELECT"]
    metric = otel.collect()["db.client.operation.duration"]
    assert metric.unit == "s"
    (point,) = [
        p for p in metric.data.data_points if p.attributes["db.query.summary"] == "SELECT users"
    ]
    assert point.count == 3
    assert point.sum == pytest.approx(sum(s.duration_ms for s in statements) / 1e3)
    assert point.attributes["db.system.name"] == ("sqlite" if is_sqlite(db) else "postgresql")
    assert point.attributes["db.namespace"] == db.url.database
    # high-cardinality values stay off metrics
    assert "db.query.text" not in point.attributes
    assert "sqlwatch.fingerprint" not in point.attributes
    assert "code.line.number" not in point.attributes
    assert tuple(point.explicit_bounds)[:3] == (0.001, 0.005, 0.01)


def test_connection_count_by_state(db: Engine, otel: OTel) -> None:
    handle = sqlwatch.instrument(db, exporters=[otel.exporter])

    def counts() -> dict[str, int]:
        metric = otel.collect()["db.client.connection.count"]
        return {
            p.attributes["db.client.connection.state"]: p.value
            for p in metric.data.data_points
            if p.attributes["db.client.connection.pool.name"] == handle.name
        }

    with db.connect() as connection:
        connection.execute(select(User.id)).all()
        assert counts()["used"] == 1
    after = counts()
    assert after["used"] == 0
    assert after["idle"] >= 1
    assert otel.collect()["db.client.connection.count"].unit == "{connection}"


def test_connection_count_of_a_pool_without_idle_connections(tmp_path: Any, otel: OTel) -> None:
    """NullPool keeps nothing idle: sqlwatch's own checkout tracking says what is used."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(f"sqlite:///{tmp_path / 'null.db'}", poolclass=NullPool)
    handle = sqlwatch.instrument(engine, exporters=[otel.exporter])

    def used() -> list[int]:
        metric = otel.collect()["db.client.connection.count"]
        return [
            p.value
            for p in metric.data.data_points
            if p.attributes["db.client.connection.pool.name"] == handle.name
            and p.attributes["db.client.connection.state"] == "used"
        ]

    with engine.connect() as first, engine.connect() as second:
        first.execute(text("SELECT 1"))
        second.execute(text("SELECT 2"))
        assert used() == [2]
    assert used() == [0]
    engine.dispose()


def test_watch_exporters_and_their_span_threshold(db: Engine, otel: OTel) -> None:
    install_sleep(db)
    sqlwatch.instrument(db, exporters=())
    with db.connect() as connection:
        connection.execute(select(User.id)).all()  # no exporter: no span
        with sqlwatch.watch(exporters=[otel.exporter]):
            connection.execute(select(User.name)).all()
        with sqlwatch.watch(exporters=[otel.exporter], span_min_duration_ms=30):
            connection.execute(select(User.id)).all()  # under the threshold
            connection.execute(text(sleep_sql(db, 40)))
    assert [s.name for s in otel.spans()] == ["SELECT users", "SELECT"]
    (point,) = [
        p
        for p in otel.collect()["db.client.operation.duration"].data.data_points
        if p.attributes["db.query.summary"] == "SELECT users"
    ]
    assert point.count == 2


def test_orm_unit_of_work_gives_one_span_per_statement(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with otel.tracer.start_as_current_span("job"), sqlwatch.watch() as w, Session(db) as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        for user in users:
            user.name = user.name.upper()
        session.add(User(name="new"))
        session.commit()
    assert len(otel.spans()) == w.query_count
    assert otel.open_spans.started == otel.open_spans.ended
    names = [s.name for s in otel.spans()]
    assert "SELECT users" in names
    assert any(n.endswith("UPDATE users") for n in names)
    assert "INSERT users" in names


def test_noop_providers_cost_nothing_and_emit_nothing(db: Engine) -> None:
    exporter = OTelExporter(
        tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
    )
    assert exporter.statement_enabled() is False
    sqlwatch.instrument(db, exporters=[exporter])
    with sqlwatch.watch() as w, db.connect() as connection:
        connection.execute(select(User.id)).all()
    assert w.query_count == 1
    assert exporter.statement_enabled() is False


def test_otel_name_resolves_to_one_shared_exporter(db: Engine) -> None:
    from sqlwatch.exporters import resolve_exporters

    (first,) = resolve_exporters(["otel"])
    (second,) = resolve_exporters(("otel",))
    assert isinstance(first, OTelExporter)
    assert first is second


@pytest.mark.skipif(sys.platform == "win32", reason="path comparison")
def test_n_plus_one_event_lands_on_the_current_span(db: Engine, otel: OTel) -> None:
    sqlwatch.instrument(db, exporters=[otel.exporter])
    with otel.tracer.start_as_current_span("GET /users") as request:
        with Session(db) as session:
            for user in session.scalars(select(User).order_by(User.id)).all():
                len(user.addresses)  # a lazy load per user: an N+1
        request_id = request.get_span_context().span_id
    (finished,) = [s for s in otel.memory.get_finished_spans() if s.name == "GET /users"]
    assert finished.context.span_id == request_id
    events = [e for e in finished.events if e.name == "sqlwatch.n_plus_one"]
    assert len(events) == 1
    event = dict(events[0].attributes or {})
    assert event["sqlwatch.n_plus_one.relationship"] == "User.addresses"
    assert event["sqlwatch.n_plus_one.count"] >= 2
    assert "selectinload(User.addresses)" in event["sqlwatch.n_plus_one.suggestion"]
    assert event["code.function.name"] == "test_n_plus_one_event_lands_on_the_current_span"
    assert event["code.file.path"] == __file__  # absolute, as on the statement spans
    counter = otel.collect()["sqlwatch.n_plus_one.count"]
    assert sum(p.value for p in counter.data.data_points) == 1


def test_a_repeated_statement_n_plus_one_in_a_watch_is_an_event_on_the_current_span(
    db: Engine, otel: OTel
) -> None:
    """A Core loop waits in the batch until the watch closes: the finding made then
    is still this request's, and goes on its span."""
    sqlwatch.instrument(db, exporters=[otel.exporter])
    span = otel.tracer.start_as_current_span("GET /users")
    with span, sqlwatch.watch("users") as w, db.connect() as connection:
        for user_id in (1, 2, 3):
            connection.execute(select(User.name).where(User.id == user_id)).all()
    assert [f.kind for f in w.report.n_plus_one] == ["repeated_statement"]
    (finished,) = [s for s in otel.memory.get_finished_spans() if s.name == "GET /users"]
    events = [e for e in finished.events if e.name == "sqlwatch.n_plus_one"]
    assert [dict(e.attributes or {})["sqlwatch.n_plus_one.kind"] for e in events] == [
        "repeated_statement"
    ]


def test_an_n_plus_one_is_processed_load_by_load_only_until_reported(
    engine: Engine, otel: OTel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a recording span the first loads of a loop are processed as they run,
    so the event lands on that span; once every scope reported the loop, the rest
    wait for the next batch like any statement (a flush per load costs a request
    with a long loop dearly)."""
    from sqlwatch.instrumentation import tracker_for

    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session, users=12)
    sqlwatch.instrument(engine, exporters=[otel.exporter])
    tracker = tracker_for(engine)
    assert tracker is not None
    flushes = [0]
    flush = tracker._flush

    def counting_flush(origin: Any = None) -> None:
        flushes[0] += 1
        flush(origin)

    monkeypatch.setattr(tracker, "_flush", counting_flush)
    with otel.tracer.start_as_current_span("GET /users") as request, sqlwatch.watch() as w:
        with Session(engine) as session:
            users = session.scalars(select(User).order_by(User.id)).all()
            for user in users:
                len(user.addresses)  # a lazy load per user: an N+1
        request_id = request.get_span_context().span_id

    assert len(users) >= 12
    (finding,) = w.report.n_plus_one
    assert finding.count == len(users)
    (finished,) = [s for s in otel.memory.get_finished_spans() if s.name == "GET /users"]
    assert finished.context.span_id == request_id
    assert [e.name for e in finished.events].count("sqlwatch.n_plus_one") == 1
    assert flushes[0] <= 3, f"{flushes[0]} flushes for {len(users)} lazy loads"


def test_pool_wait_use_times_and_timeouts(engine: Engine, otel: OTel) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from sqlwatch._capture.pool import pool_tracker_of
    from sqlwatch.instrumentation import tracker_for

    small = create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    try:
        handle = sqlwatch.instrument(small, exporters=[otel.exporter])
        tracker = tracker_for(small)
        assert tracker is not None
        assert pool_tracker_of(tracker) is not None
        for _ in range(3):
            with small.connect() as connection:
                connection.execute(text("SELECT 1"))
        with small.connect(), pytest.raises(PoolTimeout):
            small.connect()
        metrics = otel.collect()

        def points(name: str) -> list[Any]:
            return [
                p
                for p in metrics[name].data.data_points
                if p.attributes["db.client.connection.pool.name"] == handle.name
            ]

        (wait,) = points("db.client.connection.wait_time")
        (use,) = points("db.client.connection.use_time")
        (timeouts,) = points("db.client.connection.timeouts")
        assert metrics["db.client.connection.wait_time"].unit == "s"
        assert wait.count == 5  # four checkouts, one of them timed out
        assert wait.max >= 0.04  # the timed-out wait lasted pool_timeout
        assert use.count == 4
        assert timeouts.value == 1
        again = otel.collect()  # nothing new: cumulative counts stay
        (wait_again,) = [
            p
            for p in again["db.client.connection.wait_time"].data.data_points
            if p.attributes["db.client.connection.pool.name"] == handle.name
        ]
        assert wait_again.count == 5
    finally:
        sqlwatch.reset()
        small.dispose()


def test_a_watch_narrowed_to_one_engine_exports_only_that_engines_statements(
    db: Engine, otel: OTel, tmp_path: Any
) -> None:
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    sqlwatch.instrument(db, exporters=())
    sqlwatch.instrument(other, exporters=())
    with sqlwatch.watch(engines=[db], exporters=[otel.exporter]) as w:
        with db.connect() as connection:
            connection.execute(text("SELECT 1")).all()
        with other.connect() as connection:
            connection.execute(text("SELECT 2")).all()
    other.dispose()
    assert [s.sql for s in w.queries] == ["SELECT 1"]
    assert [s.attributes["db.query.text"] for s in otel.spans()] == ["SELECT ?"]


def test_an_n_plus_one_of_another_thread_stays_off_this_threads_span(
    db: Engine, otel: OTel
) -> None:
    """A batch is processed by whichever thread flushes it: a loop found there
    was not run under that thread's span, and its event must not land on it."""
    sqlwatch.instrument(db, exporters=[otel.exporter])
    looped, request_done = threading.Event(), threading.Event()

    def job() -> None:  # no span: its loads wait in the batch
        with sqlwatch.watch("job", exporters=[otel.exporter]) as w:
            with Session(db) as session:
                for user in session.scalars(select(User).order_by(User.id)).all():
                    len(user.addresses)
            looped.set()
            request_done.wait(10)
        findings.extend(w.report.n_plus_one)

    findings: list[sqlwatch.NPlusOne] = []
    thread = threading.Thread(target=job)
    thread.start()
    assert looped.wait(10)
    with (
        otel.tracer.start_as_current_span("GET /health"),
        db.connect() as connection,
        pytest.raises(Exception),  # noqa: B017  (a failed statement flushes the batch)
    ):
        connection.execute(text("SELECT * FROM missing_table"))
    request_done.set()
    thread.join(10)

    assert [f.relationship for f in findings] == ["User.addresses"]
    (request,) = [s for s in otel.memory.get_finished_spans() if s.name == "GET /health"]
    assert [e.name for e in request.events] == []
    counter = otel.collect()["sqlwatch.n_plus_one.count"]
    assert sum(p.value for p in counter.data.data_points) >= 1  # still counted
