"""Watches in 16 threads at once: every statement counted once, in its own thread's watch.

Runs on a file SQLite database behind a ``QueuePool`` and on PostgreSQL, each
pool large enough for every thread to hold a connection at the same time.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import QueuePool

import sqlwatch
from tests.conftest import require_postgres_url

THREADS = 16
PER_THREAD = 50


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def pooled_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'threads.db'}"
    else:
        url = require_postgres_url()
    engine = create_engine(url, poolclass=QueuePool, pool_size=THREADS, max_overflow=0)
    sqlwatch.instrument(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 0"))  # dialect set-up, before anything is measured
    yield engine
    engine.dispose()


def _worker(engine: Engine, tid: int, barrier: threading.Barrier) -> sqlwatch.Watch:
    with sqlwatch.watch(f"thread-{tid}") as w, engine.connect() as conn:
        barrier.wait(timeout=30)  # every thread holds a connection and an open watch
        for j in range(PER_THREAD):
            conn.execute(text(f"SELECT {tid}, {j}"))
    return w


def test_sixteen_threads_each_see_only_their_own_statements(pooled_engine: Engine) -> None:
    before = sqlwatch.report().query_count
    barrier = threading.Barrier(THREADS)
    with sqlwatch.watch() as main_thread, ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(_worker, pooled_engine, tid, barrier) for tid in range(THREADS)]
        watches = [f.result(timeout=120) for f in futures]

    for tid, w in enumerate(watches):
        assert [s.sql for s in w.queries] == [f"SELECT {tid}, {j}" for j in range(PER_THREAD)]
        assert w.query_count == PER_THREAD
    # worker threads do not inherit the main thread's context: its watch saw none
    assert main_thread.query_count == 0

    report = sqlwatch.report()
    assert report.query_count - before == THREADS * PER_THREAD
    [stats] = [f for f in report.fingerprints if f.normalized == "SELECT ?, ?"]
    assert stats.count == THREADS * PER_THREAD
    summaries = {s.name: s for s in report.scopes}
    for tid in range(THREADS):
        assert summaries[f"thread-{tid}"].query_count == PER_THREAD


def test_a_watch_shared_by_threads_is_only_open_in_its_own(pooled_engine: Engine) -> None:
    """A statement from another thread while a watch is open never leaks into it."""
    opened = threading.Event()
    finish = threading.Event()

    def holder() -> sqlwatch.Watch:
        with sqlwatch.watch() as w:
            opened.set()
            finish.wait(timeout=30)
            with pooled_engine.connect() as conn:
                conn.execute(text("SELECT 'mine'"))
        return w

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(holder)
        assert opened.wait(timeout=30)
        with pooled_engine.connect() as conn:
            for _ in range(10):
                conn.execute(text("SELECT 'other thread'"))
        finish.set()
        w = future.result(timeout=60)

    assert [s.sql for s in w.queries] == ["SELECT 'mine'"]


def test_a_thread_that_outlives_its_watch_adds_nothing_to_it(pooled_engine: Engine) -> None:
    """A thread started with the watch's context runs on after the watch closed:
    neither its statements nor a named watch it opens reach the closed watch's
    report, which is final."""
    go = threading.Event()

    def later() -> None:
        assert go.wait(timeout=30)
        with sqlwatch.watch("late"), pooled_engine.connect() as conn:
            conn.execute(text("SELECT 'late'"))

    with sqlwatch.watch("outer") as outer:
        thread = threading.Thread(target=contextvars.copy_context().run, args=(later,))
        thread.start()
        with pooled_engine.connect() as conn:
            conn.execute(text("SELECT 'inside'"))
    go.set()
    thread.join(timeout=60)

    report = outer.report
    assert [s.sql for s in report.statements] == ["SELECT 'inside'"]
    assert report.scopes == ()
    assert "late" in {s.name for s in sqlwatch.report().scopes}  # process-wide, it ran
