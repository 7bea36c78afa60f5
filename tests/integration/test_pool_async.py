"""Pool tracking on ``AsyncEngine`` (``AsyncAdaptedQueuePool``): aiosqlite and asyncpg."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import sqlwatch
from tests.conftest import async_url, require_postgres_url
from tests.integration.helpers import call_site_below
from tests.integration.pool_helpers import sqlwatch_listeners

DRIVERS = ["sqlite+aiosqlite", pytest.param("postgresql+asyncpg", marks=pytest.mark.postgres)]


async def _small_pool(driver: str, tmp_path: Path, timeout: float) -> AsyncIterator[AsyncEngine]:
    if driver == "sqlite+aiosqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"
    else:
        url = async_url(require_postgres_url())
    engine = create_async_engine(url, pool_size=2, max_overflow=1, pool_timeout=timeout)
    async with engine.connect():  # the dialect's first-connect queries, before sqlwatch
        pass
    yield engine
    await engine.dispose()


@pytest.fixture(params=DRIVERS)
async def small_pool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """Three connections; a wait for one never times out, however loaded the machine."""
    async for engine in _small_pool(request.param, tmp_path, timeout=30):
        yield engine


@pytest.fixture(params=DRIVERS)
async def timing_out_pool(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    """Three connections, and a fourth caller gives up after 0.2 s."""
    async for engine in _small_pool(request.param, tmp_path, timeout=0.2):
        yield engine


async def select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("select 1"))


def stats_of(engine: AsyncEngine, report: sqlwatch.Report | None = None) -> sqlwatch.PoolStats:
    report = report or sqlwatch.report()
    return report.pools[sqlwatch.instrument(engine).name]


async def test_async_adapted_queue_pool(small_pool: AsyncEngine) -> None:
    sqlwatch.instrument(small_pool)
    for _ in range(4):
        await select_one(small_pool)
    stats = stats_of(small_pool)
    assert stats.pool_class == "AsyncAdaptedQueuePool"
    assert (stats.size, stats.max_overflow, stats.timeouts) == (2, 1, 0)
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (4, 4, 0)
    assert stats.peak_checked_out == 1
    assert stats.hold_ms["max"] > 0


async def test_tasks_sharing_a_small_pool(small_pool: AsyncEngine) -> None:
    sqlwatch.instrument(small_pool)

    async def task() -> sqlwatch.Report:
        async with sqlwatch.watch() as w:
            for _ in range(5):
                async with small_pool.connect() as connection:
                    await connection.execute(text("select 1"))
                    await asyncio.sleep(0)
        return w.report

    reports = await asyncio.gather(*(task() for _ in range(30)))
    stats = stats_of(small_pool)
    assert stats.checkouts == stats.checkins == 150
    assert stats.checked_out == 0
    assert 1 <= stats.peak_checked_out <= 3
    assert stats.timeouts == 0
    assert sqlwatch.report().leaks == ()
    for report in reports:
        mine = stats_of(small_pool, report)
        assert (mine.checkouts, mine.checkins, mine.peak_checked_out) == (5, 5, 1)


async def test_a_task_that_outlives_its_watch_adds_nothing_to_it(small_pool: AsyncEngine) -> None:
    sqlwatch.instrument(small_pool)
    watch_closed = asyncio.Event()

    async def background() -> None:  # created in the watch: it inherits its context
        await watch_closed.wait()
        for _ in range(3):
            await select_one(small_pool)

    async with sqlwatch.watch() as w:
        await select_one(small_pool)
        task = asyncio.create_task(background())
    watch_closed.set()
    await task
    stats = stats_of(small_pool, w.report)
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (1, 1, 0)
    assert w.report.query_count == 1
    assert stats_of(small_pool).checkouts == 4


async def test_async_exhaustion_counts_timeouts(timing_out_pool: AsyncEngine) -> None:
    sqlwatch.instrument(timing_out_pool)
    held = [await timing_out_pool.connect() for _ in range(3)]
    for _ in range(2):
        with pytest.raises(exc.TimeoutError):
            await timing_out_pool.connect()
    for connection in held:
        await connection.close()
    stats = stats_of(timing_out_pool)
    assert stats.timeouts == 2
    assert (stats.checkouts, stats.checkins, stats.checked_out) == (3, 3, 0)
    assert stats.wait_ms["max"] >= 150
    assert sqlwatch.report().leaks == ()


async def test_async_unreturned_connection_points_at_the_await(small_pool: AsyncEngine) -> None:
    sqlwatch.instrument(small_pool)
    async with sqlwatch.watch() as w:
        site = call_site_below()
        connection = await small_pool.connect()
    try:
        (leak,) = w.report.leaks
        assert (leak.kind, leak.call_site) == ("unreturned", site)
    finally:
        await connection.close()


async def test_async_uninstrument_leaves_nothing(small_pool: AsyncEngine) -> None:
    sqlwatch.instrument(small_pool)
    await select_one(small_pool)
    sqlwatch.uninstrument(small_pool)
    assert sqlwatch_listeners(small_pool.sync_engine.pool) == []
    await select_one(small_pool)


@pytest.mark.postgres
async def test_an_async_connection_collected_without_close() -> None:
    """The pool cannot clean up after the collector without the event loop: it
    detaches the connection, terminates it and warns; sqlwatch reports the leak."""
    engine = create_async_engine(async_url(require_postgres_url()))
    try:
        sqlwatch.instrument(engine)
        async with sqlwatch.watch() as w:
            site = call_site_below()
            connection = await engine.connect()
            await connection.execute(text("select 1"))
            del connection
            with pytest.warns(exc.SAWarning, match="garbage collector"):
                gc.collect()
        (leak,) = w.report.leaks
        assert (leak.kind, leak.call_site) == ("garbage_collected", site)
        stats = stats_of(engine)
        assert (stats.checkouts, stats.checkins, stats.checked_out) == (1, 1, 0)
    finally:
        await engine.dispose()
