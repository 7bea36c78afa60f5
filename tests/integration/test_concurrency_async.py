"""Watches in 100 asyncio tasks at once on one ``AsyncEngine`` (aiosqlite and asyncpg).

SQLAlchemy runs each statement in a greenlet on behalf of the awaiting task;
the statement must land in that task's watch, and in no other.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import sqlwatch

TASKS = 100
PER_TASK = 5


async def _task(engine: AsyncEngine, tid: int, start: asyncio.Event) -> sqlwatch.Watch:
    async with sqlwatch.watch(f"task-{tid}") as w:
        await start.wait()
        async with engine.connect() as conn:
            for j in range(PER_TASK):
                await conn.execute(text(f"SELECT {tid}, {j}"))
                await asyncio.sleep(0)  # let the other tasks in between statements
    return w


async def test_hundred_tasks_each_see_only_their_own_statements(
    async_engine: AsyncEngine,
) -> None:
    sqlwatch.instrument(async_engine)
    async with async_engine.connect() as conn:
        await conn.execute(text("SELECT 0"))
    before = sqlwatch.report().query_count

    start = asyncio.Event()
    async with sqlwatch.watch() as creator:
        tasks = [asyncio.create_task(_task(async_engine, tid, start)) for tid in range(TASKS)]
        await asyncio.sleep(0)
        start.set()
        watches = await asyncio.gather(*tasks)

    for tid, w in enumerate(watches):
        assert [s.sql for s in w.queries] == [f"SELECT {tid}, {j}" for j in range(PER_TASK)]
    # tasks copy their creator's context: its watch encloses theirs and sees all
    assert creator.query_count == TASKS * PER_TASK
    report = sqlwatch.report()
    assert report.query_count - before == TASKS * PER_TASK
    [stats] = [f for f in report.fingerprints if f.normalized == "SELECT ?, ?"]
    assert stats.count == TASKS * PER_TASK
