"""A bug inside sqlwatch never reaches the application.

Each test breaks one part of sqlwatch on purpose (the capture listener, the
analysis, a detector, an exporter), turns the test suite's "internal errors
raise" mode off as production runs, and checks that the application's
statements still run and return their results, that nothing escapes from
``watch()``, and that the error is logged once on the ``sqlwatch`` logger.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import IntegrityError

import sqlwatch
from sqlwatch.detectors.duplicates import Duplicates
from sqlwatch.exporters import Exporter
from sqlwatch.instrumentation import tracker_for
from tests.models import Base, User


class InjectedFault(Exception):
    """Raised by the parts of sqlwatch these tests break."""


def _boom(*args: object, **kwargs: object) -> None:
    raise InjectedFault("injected by the test")


@pytest.fixture
def db(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(User).values(id=1, name="existing"))
    sqlwatch.instrument(engine, exporters=())
    with engine.connect() as conn:
        conn.execute(text("SELECT 0"))
    return engine


def internal_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "sqlwatch" and r.levelno == logging.ERROR and "internal error" in r.message
    ]


def test_broken_analysis_is_swallowed_and_logged_once(
    db: Engine,
    production_mode: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = tracker_for(db)
    assert tracker is not None
    monkeypatch.setattr(tracker, "analyzer", _boom)
    with sqlwatch.watch() as w, db.connect() as conn:
        answers = [conn.execute(text("SELECT 41 + 1")).scalar() for _ in range(3)]
    report = w.report

    assert answers == [42, 42, 42]
    assert report.query_count == 0  # what could not be analyzed is dropped, nothing else
    [record] = internal_errors(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], InjectedFault)
    assert "your application is not affected" in record.message

    monkeypatch.undo()
    with sqlwatch.watch() as after, db.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert after.query_count == 1  # sqlwatch keeps working once the fault is gone


def test_broken_capture_listener_is_swallowed(
    db: Engine,
    production_mode: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("sqlwatch._capture.call_sites.CallSiteFinder.find", _boom)
    with sqlwatch.watch() as w, db.connect() as conn:
        rows = conn.execute(text("SELECT id, name FROM users")).all()
        again = conn.execute(text("SELECT count(*) FROM users")).scalar()

    assert [tuple(r) for r in rows] == [(1, "existing")]
    assert again == 1
    assert w.query_count == 0
    [record] = internal_errors(caplog)
    assert "statement capture" in record.message


def test_broken_capture_keeps_the_drivers_exception(
    db: Engine,
    production_mode: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing statement and a failing listener: the app sees its own error only."""
    with db.connect() as conn:  # checked out first: only the statement's capture breaks
        monkeypatch.setattr("sqlwatch._capture.call_sites.CallSiteFinder.find", _boom)
        with pytest.raises(IntegrityError) as caught, conn.begin():
            conn.execute(insert(User).values(id=1, name="duplicate"))
    assert not isinstance(caught.value.orig, InjectedFault)
    assert caught.value.__cause__ is caught.value.orig
    assert len(internal_errors(caplog)) == 1


def test_broken_detector_does_not_escape_the_watch(
    db: Engine,
    production_mode: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(Duplicates, "batch", _boom)
    monkeypatch.setattr(Duplicates, "contribute", _boom)
    with sqlwatch.watch() as w, db.connect() as conn:
        assert conn.execute(text("SELECT 7")).scalar() == 7
        live = w.report  # reading a report while open must not raise either
    final = w.report
    process = sqlwatch.report()

    assert live.query_count == final.query_count == 1
    assert process.query_count >= 1
    assert internal_errors(caplog)
    assert all(
        r.exc_info is not None and isinstance(r.exc_info[1], InjectedFault)
        for r in internal_errors(caplog)
    )


def test_broken_watch_close_keeps_the_applications_exception(
    db: Engine,
    production_mode: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sqlwatch.scope import Scope

    monkeypatch.setattr(Scope, "run_summary", _boom)
    with pytest.raises(IntegrityError), sqlwatch.watch("named"), db.begin() as conn:
        conn.execute(insert(User).values(id=1, name="duplicate"))
    assert internal_errors(caplog)


class BrokenExporter(Exporter):
    def statement_enabled(self) -> bool:
        return True

    on_statement = _boom
    on_slow_query = _boom
    on_scope_end = _boom


def test_broken_exporter_hooks_are_swallowed(
    db: Engine,
    production_mode: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with sqlwatch.watch(exporters=[BrokenExporter()], slow_query_ms=0) as w, db.connect() as conn:
        results = [conn.execute(text(f"SELECT {i}")).scalar() for i in range(3)]

    assert results == [0, 1, 2]
    assert w.query_count == 3
    assert len(w.report.slow_queries) == 3
    sites = sorted(r.getMessage() for r in internal_errors(caplog))
    assert len(sites) == 3  # one log line per broken hook, not one per statement
    assert any("on_statement" in s for s in sites)
    assert any("on_slow_query" in s for s in sites)
    assert any("on_scope_end" in s for s in sites)


def test_in_the_test_suite_internal_errors_raise(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite's mode: the same fault fails loudly, so swallowing never hides a bug."""
    tracker = tracker_for(db)
    assert tracker is not None
    monkeypatch.setattr(tracker, "analyzer", _boom)
    with db.connect() as conn:
        conn.execute(text("SELECT 1"))
    with pytest.raises(InjectedFault):
        sqlwatch.report()  # processing the pending statement analyzes it


class RaisingHandler(logging.Handler):
    """A handler whose ``emit`` raises instead of calling ``handleError``: a log
    shipper whose backend is down, as some third-party handlers do."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.calls = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.calls += 1
        raise RuntimeError("log shipping is down")


def test_a_sqlwatch_log_handler_that_raises_does_not_reach_the_application(
    db: Engine, production_mode: None
) -> None:
    """The logging exporter's warning fails in the handler, and so does the report
    of that internal error, on the same logger: neither may reach the statement."""
    sqlwatch.uninstrument(db)
    sqlwatch.instrument(db, exporters=["logging"], slow_query_ms=0)
    handler = RaisingHandler()
    logger = logging.getLogger("sqlwatch")
    logger.addHandler(handler)
    try:
        with sqlwatch.watch(slow_query_ms=0, exporters=["logging"]) as w, db.connect() as conn:
            answers = [conn.execute(text(f"SELECT {i} + 1")).scalar() for i in range(3)]
    finally:
        logger.removeHandler(handler)

    assert answers == [1, 2, 3]
    assert handler.calls  # the handler was reached, and raised
    assert w.query_count == 3
    assert len(w.report.slow_queries) == 3


def test_unreadable_memory_figures_do_not_break_instrument_or_watch(
    engine: Engine,
    production_mode: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No /proc (a sandbox) and psutil refused too: ``instrument()`` and ``watch()``
    read RSS where the application calls them, and must not raise there."""
    import psutil

    from sqlwatch import _rss

    class NoProc(_rss._Statm):
        def read(self) -> int:
            raise FileNotFoundError("/proc/self/statm")

    def denied(self: psutil.Process) -> None:
        raise psutil.AccessDenied(pid=self.pid)

    monkeypatch.setattr(_rss, "_reader", NoProc())
    monkeypatch.setattr(psutil.Process, "memory_info", denied)

    sqlwatch.instrument(engine, exporters=())
    with sqlwatch.watch() as w, engine.connect() as conn:
        assert conn.execute(text("SELECT 42")).scalar() == 42
    report = w.report

    assert report.query_count == 1
    assert report.resources is not None
    assert report.resources.rss_start_bytes == report.resources.rss_end_bytes == 0
    [record] = internal_errors(caplog)  # once, though RSS was asked for several times
    assert "reading RSS" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], psutil.AccessDenied)
