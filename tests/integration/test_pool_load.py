"""Real threads against a real QueuePool: the figures add up exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

import sqlwatch
from tests.integration.pool_helpers import make_engine

POOL_SIZE = 5
MAX_OVERFLOW = 5


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(
        request.param,
        tmp_path,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_timeout=60,
    )
    engine.connect().close()  # the dialect's first-connect queries, before sqlwatch looks
    yield engine
    engine.dispose()


def hammer(engine: Engine, threads: int, iterations: int) -> list[sqlwatch.Report]:
    """Every thread runs ``iterations`` checkouts, each in its own watch."""
    start = threading.Barrier(threads)
    reports: list[sqlwatch.Report] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(tid: int) -> None:
        try:
            start.wait()
            with sqlwatch.watch(f"thread {tid}") as w:
                for i in range(iterations):
                    with engine.connect() as connection:
                        connection.execute(text("select :i"), {"i": i})
            with lock:
                reports.append(w.report)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(tid,)) for tid in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return reports


@pytest.mark.parametrize(("threads", "iterations"), [(20, 10), (100, 5)])
def test_threads_against_a_queue_pool(engine: Engine, threads: int, iterations: int) -> None:
    handle = sqlwatch.instrument(engine, exporters=())
    reports = hammer(engine, threads, iterations)
    total = threads * iterations
    report = sqlwatch.report()
    stats = report.pools[handle.name]
    assert stats.checkouts == stats.checkins == total
    assert stats.checked_out == 0
    assert 1 <= stats.peak_checked_out <= POOL_SIZE + MAX_OVERFLOW
    # not <= pool_size + max_overflow: an overflow connection that comes back to
    # a full pool is closed, and a later checkout connects again
    assert 1 <= stats.connects <= stats.checkouts
    assert stats.timeouts == 0
    assert stats.invalidations == 0
    assert report.leaks == ()
    assert report.query_count == total
    assert 0 < stats.wait_ms["p50"] <= stats.wait_ms["p95"] <= stats.wait_ms["max"]
    assert 0 < stats.hold_ms["p50"] <= stats.hold_ms["p95"] <= stats.hold_ms["max"]
    # each thread's watch saw its own checkouts and statements, and nothing else
    assert len(reports) == threads
    for own in reports:
        assert own.query_count == iterations
        mine = own.pools[handle.name]
        assert mine.checkouts == mine.checkins == iterations
        assert (mine.checked_out, mine.peak_checked_out) == (0, 1)
        assert own.leaks == ()
    print(
        f"\n{engine.dialect.name} {threads}x{iterations}: checkouts {stats.checkouts}, "
        f"checkins {stats.checkins}, peak {stats.peak_checked_out}, "
        f"connects {stats.connects}, wait p50/p95/max {stats.wait_ms['p50']}/"
        f"{stats.wait_ms['p95']}/{stats.wait_ms['max']} ms, hold p50/p95/max "
        f"{stats.hold_ms['p50']}/{stats.hold_ms['p95']}/{stats.hold_ms['max']} ms"
    )


def test_a_watch_shared_by_threads_counts_all_of_them(engine: Engine) -> None:
    """Threads started with the watch's context (``contextvars.copy_context``) are
    inside it, as for statements."""
    import contextvars

    handle = sqlwatch.instrument(engine, exporters=())
    with sqlwatch.watch() as w:
        workers = []
        for _ in range(10):
            context = contextvars.copy_context()
            workers.append(
                threading.Thread(
                    target=context.run,
                    args=(lambda: [engine.connect().close() for _ in range(5)],),
                )
            )
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    stats = w.report.pools[handle.name]
    assert stats.checkouts == stats.checkins == 50
    assert stats.checked_out == 0
    assert 1 <= stats.peak_checked_out <= POOL_SIZE + MAX_OVERFLOW
    assert w.report.leaks == ()
