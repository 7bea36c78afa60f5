"""``AsyncSession`` opened, closed and left open (aiosqlite and asyncpg)."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import sqlwatch
from sqlwatch.records import SessionStats
from tests.integration.helpers import call_site_below
from tests.models import Base, User


async def seeded(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as session:
        session.add_all([User(name=f"user {i}") for i in range(3)])
        await session.commit()


async def test_async_sessions_opened_and_closed(async_engine: AsyncEngine) -> None:
    await seeded(async_engine)
    sqlwatch.instrument(async_engine)
    factory = async_sessionmaker(async_engine)
    async with sqlwatch.watch() as w:
        for _ in range(50):
            async with factory() as session:
                (await session.scalars(select(User))).all()
    assert w.report.sessions == SessionStats(opened=50, closed=50, unclosed=0)


async def test_async_sessions_left_open(async_engine: AsyncEngine) -> None:
    await seeded(async_engine)
    sqlwatch.instrument(async_engine)
    sessions = []
    sites = []
    async with sqlwatch.watch() as w:
        for _ in range(3):
            session = AsyncSession(async_engine)
            sites.append(call_site_below())
            await session.execute(text("select 1"))
            sessions.append(session)
    stats = w.report.sessions
    assert (stats.opened, stats.closed, stats.unclosed) == (3, 0, 3)
    assert list(stats.unclosed_call_sites) == sites
    assert [leak.kind for leak in w.report.leaks] == ["unreturned"] * 3
    for session in sessions:
        await session.close()
    assert sqlwatch.report().sessions == SessionStats(opened=3, closed=3, unclosed=0)
