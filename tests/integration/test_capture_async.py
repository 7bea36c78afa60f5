"""Capture on real databases through ``AsyncEngine`` (aiosqlite and asyncpg).

sqlwatch instruments ``async_engine.sync_engine``; the statements run in a
greenlet on behalf of the awaiting task, and must still carry the user's call
site and land in the user's watch.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import sqlwatch
from sqlwatch.instrumentation import tracker_for
from tests.integration.helpers import HEX, ISO_UTC, call_site_below
from tests.integration.pool_helpers import engine_listeners, sqlwatch_listeners
from tests.models import Address, Base, Tag, User, seed


@pytest.fixture
async def adb(async_engine: AsyncEngine) -> AsyncEngine:
    async with async_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(async_engine) as session:
        await session.run_sync(seed)
    return async_engine


async def test_async_statement_has_every_field(adb: AsyncEngine) -> None:
    handle = sqlwatch.instrument(adb)
    assert handle.engine is adb
    async with AsyncSession(adb) as session, sqlwatch.watch() as w:
        site = call_site_below()
        users = (await session.scalars(select(User).where(User.id > 1))).all()

    assert len(users) == 2
    [statement] = w.queries
    assert statement.operation == "SELECT"
    assert statement.tables == ("users",)
    assert HEX.match(statement.fingerprint)
    assert statement.duration_ms > 0
    assert statement.executemany is False
    assert ISO_UTC.match(statement.started_at)
    assert statement.engine == adb.url.render_as_string(hide_password=True)
    # the user's line, found across the greenlet boundary
    assert statement.call_site == site
    assert statement.relationship is None
    assert statement.error is None
    assert statement.params is None


async def test_async_core_text_and_executemany(adb: AsyncEngine) -> None:
    sqlwatch.instrument(adb)
    async with adb.begin() as conn, sqlwatch.watch() as w:
        await conn.execute(insert(Tag), [{"name": "a"}, {"name": "b"}, {"name": "c"}])
        name = (
            await conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": 1})
        ).scalar()

    assert name == "user0"
    many, one = w.queries
    assert (many.operation, many.tables, many.executemany) == ("INSERT", ("tags",), True)
    assert (one.operation, one.normalized) == ("SELECT", "SELECT name FROM users WHERE id = ?")


async def test_async_streaming(adb: AsyncEngine) -> None:
    sqlwatch.instrument(adb)
    async with adb.connect() as conn, sqlwatch.watch() as w:
        result = await conn.stream(select(Address.email))
        emails = [row.email async for row in result]

    assert len(emails) == 6
    [statement] = w.queries
    assert (statement.operation, statement.tables) == ("SELECT", ("addresses",))


async def test_async_lazy_load_relationship(adb: AsyncEngine) -> None:
    sqlwatch.instrument(adb)
    async with AsyncSession(adb) as session:
        users = (await session.scalars(select(User).order_by(User.id))).all()
        with sqlwatch.watch() as w:
            counts = await session.run_sync(lambda _: [len(u.addresses) for u in users])

    assert counts == [2, 2, 2]
    assert [s.relationship for s in w.queries] == ["User.addresses"] * 3


async def test_async_error_reaches_the_app_untouched(adb: AsyncEngine) -> None:
    seen: list[BaseException] = []

    @event.listens_for(adb.sync_engine, "handle_error")
    def _remember(context: object) -> None:
        seen.append(context.original_exception)  # type: ignore[attr-defined]

    sqlwatch.instrument(adb)
    with sqlwatch.watch() as w, pytest.raises(IntegrityError) as caught:
        async with adb.begin() as conn:
            await conn.execute(insert(User).values(id=1, name="duplicate"))

    assert seen == [caught.value.orig]
    [statement] = w.queries
    # the driver's own exception (asyncpg's, under SQLAlchemy's adapter class)
    driver_error = caught.value.orig.__cause__ or caught.value.orig
    assert statement.error == type(driver_error).__name__
    assert w.report.errors == {statement.error: 1}


async def test_instrumenting_async_and_sync_engine_is_one_instrumentation(
    adb: AsyncEngine,
) -> None:
    handle = sqlwatch.instrument(adb)
    assert sqlwatch.instrument(adb.sync_engine) is handle
    assert sqlwatch.instrument(adb) is handle
    assert tracker_for(adb) is tracker_for(adb.sync_engine)
    async with adb.connect() as conn, sqlwatch.watch() as w:
        await conn.execute(text("SELECT 1"))
    assert w.query_count == 1


async def test_uninstrument_async_engine(adb: AsyncEngine) -> None:
    sqlwatch.instrument(adb)
    tracker = tracker_for(adb)
    assert tracker is not None
    registrations = [(ref(), name, fn) for ref, name, fn in tracker._registrations]

    sqlwatch.uninstrument(adb)

    for target, identifier, fn in registrations:
        assert not event.contains(target, identifier, fn), identifier
    assert engine_listeners(adb.sync_engine) == []  # found independently of sqlwatch's list
    assert sqlwatch_listeners(adb.sync_engine.pool) == []
    async with adb.connect() as conn, sqlwatch.watch() as w:
        await conn.execute(text("SELECT 1"))
    assert w.query_count == 0
