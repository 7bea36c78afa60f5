"""Pool tracking through the user's entry points: checkouts, waits, timeouts,
invalidations, leaks and uninstrument, on file SQLite and PostgreSQL."""

from __future__ import annotations

import contextvars
import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, exc, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.exporters.base import Exporter
from sqlwatch.records import Leak
from tests.integration.helpers import call_site_below
from tests.integration.pool_helpers import (
    engine_listeners,
    make_engine,
    select_one,
    sqlwatch_listeners,
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(request.param, tmp_path, pool_size=2, max_overflow=1, pool_timeout=0.2)
    yield engine
    engine.dispose()


def pool_stats(engine: Engine, report: sqlwatch.Report | None = None) -> sqlwatch.PoolStats:
    report = report or sqlwatch.report()
    (stats,) = report.pools.values()
    assert stats.engine == next(iter(report.pools))
    return stats


class LeakRecorder(Exporter):
    def __init__(self) -> None:
        self.leaks: list[tuple[Leak, str]] = []

    def on_leak(self, leak: Leak, scope: str) -> None:
        self.leaks.append((leak, scope))


def test_checkouts_checkins_and_percentiles(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    for _ in range(5):
        select_one(engine)
    stats = pool_stats(engine)
    assert stats.pool_class == "QueuePool"
    assert (stats.size, stats.max_overflow) == (2, 1)
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (5, 5, 0)
    assert stats.peak_checked_out == 1
    assert stats.connects == 1
    assert (stats.invalidations, stats.timeouts) == (0, 0)
    for figures in (stats.wait_ms, stats.hold_ms):
        assert set(figures) == {"p50", "p95", "max"}
        assert 0 < figures["p50"] <= figures["p95"] <= figures["max"]


def test_connections_out_now_and_the_peak(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    first, second = engine.connect(), engine.connect()
    third = engine.connect()  # the overflow connection
    stats = pool_stats(engine)
    assert (stats.checked_out, stats.peak_checked_out, stats.checkouts) == (3, 3, 3)
    assert stats.connects == 3
    for connection in (first, second, third):
        connection.close()
    stats = pool_stats(engine)
    assert (stats.checked_out, stats.peak_checked_out, stats.checkins) == (0, 3, 3)


def test_a_watch_counts_its_own_checkouts_only(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    select_one(engine)
    outside = engine.connect()
    with sqlwatch.watch() as w:
        select_one(engine)
        select_one(engine)
        outside.close()  # checked out before the watch: not the watch's
    stats = pool_stats(engine, w.report)
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (2, 2, 0)
    assert stats.connects == 1  # the second connection was made inside the watch
    assert w.report.leaks == ()
    assert pool_stats(engine).checkouts == 4


def test_watches_in_other_threads_do_not_see_each_others_checkouts(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    barrier = threading.Barrier(2)
    reports: dict[int, sqlwatch.Report] = {}

    def work(n: int) -> None:
        with sqlwatch.watch() as w:
            barrier.wait()
            for _ in range(n):
                select_one(engine)
            barrier.wait()
        reports[n] = w.report

    threads = [threading.Thread(target=work, args=(n,)) for n in (3, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pool_stats(engine, reports[3]).checkouts == 3
    assert pool_stats(engine, reports[7]).checkouts == 7
    assert pool_stats(engine).checkouts == 10


def test_a_closed_watch_keeps_its_figures_when_its_connection_comes_back(engine: Engine) -> None:
    """The report of a closed watch says the same whenever it is first read."""
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        leaked = engine.connect()
    leaked.close()  # after the watch closed, before its report is read
    stats = pool_stats(engine, w.report)
    assert (stats.checked_out, stats.checkouts, stats.checkins) == (1, 1, 0)
    assert stats.hold_ms["max"] == 0
    assert [leak.kind for leak in w.report.leaks] == ["unreturned"]
    stats = pool_stats(engine)
    assert (stats.checked_out, stats.checkouts, stats.checkins) == (0, 1, 1)


def test_a_thread_that_outlives_its_watch_adds_nothing_to_it(engine: Engine) -> None:
    select_one(engine)  # the dialect's first-connect queries, before sqlwatch
    sqlwatch.instrument(engine)
    checked_out_once = threading.Event()
    watch_closed = threading.Event()

    def work() -> None:
        select_one(engine)
        checked_out_once.set()
        watch_closed.wait()
        for _ in range(3):
            select_one(engine)
        with engine.connect() as connection:
            connection.invalidate()
        select_one(engine)  # connects again

    with sqlwatch.watch() as w:
        thread = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        thread.start()
        checked_out_once.wait()
    watch_closed.set()
    thread.join()
    stats = pool_stats(engine, w.report)
    assert (stats.checkouts, stats.checkins, stats.peak_checked_out) == (1, 1, 1)
    assert (stats.connects, stats.invalidations) == (0, 0)
    assert w.report.query_count == 1
    stats = pool_stats(engine)
    assert (stats.checkouts, stats.checkins, stats.invalidations) == (6, 6, 1)


def test_exhaustion_counts_every_timeout_and_its_wait(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    held = [engine.connect() for _ in range(3)]  # pool_size 2 + max_overflow 1
    with sqlwatch.watch() as w:
        for _ in range(4):
            with pytest.raises(exc.TimeoutError):
                engine.connect()
    for connection in held:
        connection.close()
    stats = pool_stats(engine)
    assert stats.timeouts == 4
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (3, 3, 0)
    # each timed-out caller waited out pool_timeout (0.2 s), by the pool's own clock
    assert stats.wait_ms["max"] >= 150
    assert pool_stats(engine, w.report).timeouts == 4
    assert sqlwatch.report().leaks == ()


def test_exhaustion_across_threads_then_no_leak(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    release = threading.Event()
    holding = threading.Barrier(4)
    errors: list[BaseException] = []

    def holder() -> None:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
            holding.wait()
            release.wait()

    def starved() -> None:
        try:
            engine.connect()
        except exc.TimeoutError as error:
            errors.append(error)

    holders = [threading.Thread(target=holder) for _ in range(3)]
    for thread in holders:
        thread.start()
    holding.wait()
    waiters = [threading.Thread(target=starved) for _ in range(5)]
    for thread in waiters:
        thread.start()
    for thread in waiters:
        thread.join()
    release.set()
    for thread in holders:
        thread.join()
    stats = pool_stats(engine)
    assert len(errors) == 5
    assert stats.timeouts == 5
    assert (stats.checkouts, stats.checkins, stats.checked_out, stats.peak_checked_out) == (
        3,
        3,
        0,
        3,
    )
    assert sqlwatch.report().leaks == ()


def test_an_unreturned_connection_is_one_leak_at_its_line(engine: Engine) -> None:
    recorder = LeakRecorder()
    sqlwatch.instrument(engine, exporters=[recorder])
    with sqlwatch.watch("request", exporters=[recorder]) as w:
        select_one(engine)
        site = call_site_below()
        leaked = engine.connect()
    try:
        (leak,) = w.report.leaks
        assert leak.kind == "unreturned"
        assert leak.call_site == site
        assert leak.held_ms >= 0
        assert leak.engine == pool_stats(engine).engine
        assert pool_stats(engine, w.report).checked_out == 1
        # the process-wide report lists it once, and both scopes told their exporters
        assert [k.kind for k in sqlwatch.report().leaks] == ["unreturned"]
        assert sorted(scope for _, scope in recorder.leaks) == ["process", "request"]
    finally:
        leaked.close()
    assert pool_stats(engine).checked_out == 0


def test_a_session_left_open_leaks_at_the_line_that_made_it_connect(engine: Engine) -> None:
    """The connection's call site is the application's line, whichever Session
    method took it out, however often those methods take turns."""
    sqlwatch.instrument(engine)
    sessions: list[Session] = []
    sites: list[str | None] = []
    for round_ in range(3):
        with sqlwatch.watch() as w:
            session = Session(engine)
            sessions.append(session)
            if round_ % 2:
                sites.append(call_site_below())
                session.execute(text("SELECT 1"))
            else:
                sites.append(call_site_below())
                session.connection()
        (leak,) = w.report.leaks
        assert leak.kind == "unreturned"
        assert leak.call_site == sites[-1]
    for session in sessions:
        session.close()
    assert len(set(sites)) == 2


def test_nested_scopes_each_report_the_connection_left_out(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as outer:
        with sqlwatch.watch() as inner:
            leaked = engine.connect()
        returned_later = engine.connect()
        returned_later.close()
    leaked.close()
    assert [k.kind for k in inner.report.leaks] == ["unreturned"]
    assert [k.kind for k in outer.report.leaks] == ["unreturned"]
    assert len(sqlwatch.report().leaks) == 1


def test_a_connection_dropped_without_close_is_garbage_collected(engine: Engine) -> None:
    recorder = LeakRecorder()
    sqlwatch.instrument(engine, exporters=[recorder])
    with sqlwatch.watch() as w:
        site = call_site_below()
        dropped = engine.connect()
        dropped.execute(text("select 1"))
        del dropped
        gc.collect()
        select_one(engine)  # a later pool event tells the exporters
    (leak,) = w.report.leaks
    assert leak.kind == "garbage_collected"
    assert leak.call_site == site
    stats = pool_stats(engine)
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (2, 2, 0)
    assert [k.kind for k in sqlwatch.report().leaks] == ["garbage_collected"]
    assert [leak.kind for leak, _ in recorder.leaks] == ["garbage_collected"]


def test_a_collected_connection_reaches_the_exporters_at_the_next_checkout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However soon after the pool's last upkeep that checkout comes."""
    monkeypatch.setattr("sqlwatch._capture.pool.MAINTENANCE_NS", 3600 * 10**9)
    recorder = LeakRecorder()
    sqlwatch.instrument(engine, exporters=[recorder])
    select_one(engine)  # the pool's upkeep: the next is an hour away
    dropped = engine.connect()
    del dropped
    gc.collect()
    assert recorder.leaks == []  # never from inside the collector
    select_one(engine)
    assert [(leak.kind, scope) for leak, scope in recorder.leaks] == [
        ("garbage_collected", "process")
    ]


def test_taking_the_report_delivers_the_leaks_found_since_the_last_checkout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application that stops checking out (shutdown, an idle worker) still
    hears of the connection it dropped when it asks for the report."""
    monkeypatch.setattr("sqlwatch._capture.pool.MAINTENANCE_NS", 3600 * 10**9)
    recorder = LeakRecorder()
    sqlwatch.instrument(engine, exporters=[recorder])
    select_one(engine)
    dropped = engine.connect()
    del dropped
    gc.collect()
    assert [leak.kind for leak in sqlwatch.report().leaks] == ["garbage_collected"]
    assert [(leak.kind, scope) for leak, scope in recorder.leaks] == [
        ("garbage_collected", "process")
    ]


def test_a_leak_found_by_a_report_reaches_the_exporters_at_the_next_checkout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sqlwatch._capture.pool.MAINTENANCE_NS", 3600 * 10**9)
    recorder = LeakRecorder()
    sqlwatch.instrument(engine, exporters=[recorder], leak_threshold_s=0.5)
    held = engine.connect()  # the pool's upkeep: the next is an hour away
    time.sleep(0.6)
    try:
        assert [leak.kind for leak in sqlwatch.report().leaks] == ["long_held"]
        select_one(engine)
        assert [(leak.kind, scope) for leak, scope in recorder.leaks] == [("long_held", "process")]
    finally:
        held.close()


def test_a_connection_held_past_the_threshold_is_long_held(engine: Engine) -> None:
    sqlwatch.instrument(engine, leak_threshold_s=30.0)
    with sqlwatch.watch(leak_threshold_s=0.5) as w:
        with engine.connect() as connection:
            time.sleep(0.6)  # a lower bound only: held at least 600 ms
            connection.execute(text("select 1"))
        select_one(engine)  # returned at once (well under 0.5 s, even on a loaded machine)
    (leak,) = w.report.leaks
    assert (leak.kind, leak.held_ms >= 600) == ("long_held", True)
    assert sqlwatch.report().leaks == ()  # 30 s for the process-wide report


def test_a_connection_still_held_is_long_held_when_a_report_is_taken(engine: Engine) -> None:
    sqlwatch.instrument(engine, leak_threshold_s=0.5)
    connection = engine.connect()
    time.sleep(0.6)
    try:
        (leak,) = sqlwatch.report().leaks
        assert leak.kind == "long_held"
        assert sqlwatch.report().leaks == (leak,)  # found once
    finally:
        connection.close()


def test_invalidation_hard_and_soft_is_counted(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    with engine.connect() as connection:
        connection.execute(text("select 1"))
        connection.invalidate()
        connection.rollback()
        connection.execute(text("select 1"))  # reconnects: a new checkout
    with engine.connect() as connection:
        connection.connection.invalidate(soft=True)
    stats = pool_stats(engine)
    assert stats.invalidations == 2
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (3, 3, 0)
    assert stats.connects == 2
    assert sqlwatch.report().leaks == ()


def test_a_simulated_disconnect_is_counted(engine: Engine) -> None:
    sqlwatch.instrument(engine)

    @event.listens_for(engine, "handle_error")
    def everything_is_a_disconnect(context: ExceptionContext) -> None:
        context.is_disconnect = True

    with engine.connect() as connection:
        with pytest.raises(exc.DBAPIError) as raised:
            connection.execute(text("select * from no_such_table"))
        assert raised.value.connection_invalidated
    select_one(engine)
    stats = pool_stats(engine)
    assert stats.invalidations == 1
    assert stats.connects == 2
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (2, 2, 0)


@pytest.mark.postgres
def test_a_server_side_disconnect_is_counted(tmp_path: Path) -> None:
    engine = make_engine("postgresql", tmp_path, pool_size=2)
    other = make_engine("postgresql", tmp_path)
    try:
        sqlwatch.instrument(engine)
        with engine.connect() as connection:
            pid = connection.execute(text("select pg_backend_pid()")).scalar()
            connection.commit()
            with other.connect() as killer:
                killer.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(exc.OperationalError) as raised:
                connection.execute(text("select 1"))
            assert raised.value.connection_invalidated
        select_one(engine)
        stats = pool_stats(engine)
        assert stats.invalidations == 1
        assert (stats.checkouts, stats.checkins, stats.checked_out) == (2, 2, 0)
    finally:
        engine.dispose()
        other.dispose()


def test_dispose_keeps_tracking_the_new_pool(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    held = engine.connect()
    old_pool = engine.pool
    engine.dispose()
    assert engine.pool is not old_pool
    select_one(engine)
    held.close()  # returned to the old pool: still counted
    old_pool.dispose()  # SQLAlchemy leaves it there otherwise
    stats = pool_stats(engine)
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (2, 2, 0)


def test_uninstrument_leaves_nothing_on_the_engine_or_its_pools(engine: Engine) -> None:
    before = engine.pool
    sqlwatch.instrument(engine)
    select_one(engine)
    engine.dispose()  # a second pool, created by sqlwatch's wrapper
    select_one(engine)
    assert sqlwatch_listeners(engine.pool)
    sqlwatch.uninstrument(engine)
    for pool in (before, engine.pool):
        assert sqlwatch_listeners(pool) == []
    assert engine_listeners(engine) == []
    engine.dispose()
    assert sqlwatch_listeners(engine.pool) == []
    select_one(engine)  # the engine works as before
    # what was counted before uninstrument stays in the process-wide report
    assert pool_stats(engine).checkouts == 2


def test_the_same_engine_instrumented_again_counts_on(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    select_one(engine)
    sqlwatch.uninstrument(engine)
    select_one(engine)  # not watched
    sqlwatch.instrument(engine)
    select_one(engine)
    stats = pool_stats(engine)
    assert (stats.checkouts, stats.checkins) == (2, 2)


def test_reset_forgets_the_pools(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    select_one(engine)
    sqlwatch.reset()
    assert sqlwatch_listeners(engine.pool) == []
    assert sqlwatch.report().pools == {}


def test_a_failing_connect_is_not_a_checkout(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    sqlwatch.instrument(engine)
    with pytest.raises(exc.OperationalError):
        engine.connect()
    stats = pool_stats(engine)
    assert (stats.checkouts, stats.checkins, stats.checked_out, stats.connects) == (0, 0, 0, 0)
    engine.dispose()


def test_the_report_round_trips_and_validates(engine: Engine) -> None:
    import jsonschema

    from sqlwatch.schema import load_report_schema

    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        leaked = engine.connect()
        with Session(engine) as session:
            session.execute(text("select 1"))
    leaked.close()
    for report in (w.report, sqlwatch.report()):
        assert report.pools
        assert report.leaks
        assert report.sessions.opened == 1
        data = report.to_dict()
        jsonschema.Draft202012Validator(load_report_schema()).validate(data)
        again = sqlwatch.Report.from_dict(data)
        assert again.pools == report.pools
        assert again.leaks == report.leaks
        assert again.sessions == report.sessions
