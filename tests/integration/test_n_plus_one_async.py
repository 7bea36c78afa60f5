"""N+1 detection with ``AsyncSession``, on aiosqlite and asyncpg.

``AsyncSession`` refuses implicit IO, so a lazy load in a loop is written
``await obj.awaitable_attrs.rel`` or runs inside ``run_sync``: both are N+1s
with the line of the loop as call site.
"""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import select
from sqlalchemy.exc import MissingGreenlet, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, selectinload

import sqlwatch
from tests.integration.helpers import call_site_below
from tests.models import Base, User, seed


@pytest.fixture
async def make_session(
    async_engine: AsyncEngine,
) -> async_sessionmaker[AsyncSession]:
    async with async_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    make = async_sessionmaker(async_engine, expire_on_commit=False)
    async with make() as session:
        await session.run_sync(seed)
    sqlwatch.instrument(async_engine, exporters=())
    return make


async def test_awaitable_attrs_in_a_loop(make_session: async_sessionmaker[AsyncSession]) -> None:
    async with sqlwatch.watch() as w, make_session() as session:
        users = (await session.scalars(select(User).order_by(User.id))).all()
        for user in users:
            site = call_site_below()
            addresses = await user.awaitable_attrs.addresses
            assert len(addresses) == 2

    [finding] = w.n_plus_one
    assert finding.relationship == "User.addresses"
    assert finding.kind == "lazy_load"
    assert finding.count == 3
    assert finding.call_site == site
    assert finding.loaded_by is not None
    assert "FROM users" in finding.loaded_by
    assert "selectinload(User.addresses)" in finding.suggestion


def count_hobbies(session: Session) -> tuple[int, str]:
    """Sync code run by ``AsyncSession.run_sync``: lazy loads are allowed here."""
    total = 0
    site = call_site_below(2)
    for user in session.scalars(select(User)).all():
        total += len(user.hobbies)
    return total, site


async def test_run_sync_loop(make_session: async_sessionmaker[AsyncSession]) -> None:
    async with sqlwatch.watch() as w, make_session() as session:
        total, site = await session.run_sync(count_hobbies)

    assert total == 3
    [finding] = w.n_plus_one
    assert finding.relationship == "User.hobbies"
    assert finding.count == 3
    assert finding.call_site == site


@pytest.mark.filterwarnings(
    # aiosqlite leaves the cursor coroutine it could not await: SQLAlchemy's and
    # aiosqlite's behaviour, with or without sqlwatch
    "ignore:coroutine 'Connection.cursor' was never awaited:RuntimeWarning",
    "ignore::pytest.PytestUnraisableExceptionWarning",
)
async def test_implicit_lazy_load_raises_untouched_and_is_not_counted(
    make_session: async_sessionmaker[AsyncSession],
) -> None:
    async with sqlwatch.watch() as w, make_session() as session:
        users = (await session.scalars(select(User))).all()
        for user in users:
            # as SQLAlchemy raises it: MissingGreenlet (asyncpg), or wrapped in a
            # StatementError (aiosqlite)
            with pytest.raises((MissingGreenlet, StatementError)) as raised:
                _ = user.addresses
            error = raised.value
            cause = error if isinstance(error, MissingGreenlet) else error.orig
            assert isinstance(cause, MissingGreenlet)
            del raised, error, cause
    gc.collect()

    assert w.n_plus_one == []


async def test_selectinload_in_async(make_session: async_sessionmaker[AsyncSession]) -> None:
    async with sqlwatch.watch() as w, make_session() as session:
        query = select(User).options(selectinload(User.addresses))
        users = (await session.scalars(query)).all()
        total = sum(len(user.addresses) for user in users)

    assert total == 6
    assert w.query_count == 2
    assert w.n_plus_one == []
    assert w.report.unused_eager_loads == ()


async def test_ignore_n_plus_one_in_a_task(make_session: async_sessionmaker[AsyncSession]) -> None:
    async with sqlwatch.watch() as w, make_session() as session:
        users = (await session.scalars(select(User))).all()
        with sqlwatch.ignore_n_plus_one("User.addresses"):
            for user in users:
                await user.awaitable_attrs.addresses

    assert w.n_plus_one == []


async def test_unused_eager_load_in_async(make_session: async_sessionmaker[AsyncSession]) -> None:
    async with sqlwatch.watch() as w, make_session() as session:
        site = call_site_below()
        users = (await session.scalars(select(User).options(selectinload(User.hobbies)))).all()
        assert len(users) == 3

    [unused] = w.report.unused_eager_loads
    assert unused.relationship == "User.hobbies"
    assert unused.call_site == site


# -- the assertion helpers on async code ------------------------------------------------


async def test_assertions_decorate_async_functions(
    make_session: async_sessionmaker[AsyncSession],
) -> None:
    """Around an ``async def`` the block must span the awaited body, not the call that
    only creates the coroutine (where it would pass having checked nothing)."""

    async def emails() -> list[str]:
        async with make_session() as session:
            users = (await session.scalars(select(User))).all()
            return [a.email for u in users for a in await u.awaitable_attrs.addresses]

    with pytest.raises(sqlwatch.QueryCountExceeded, match="expected at most 1 queries, 4 ran"):
        await sqlwatch.assert_max_queries(1)(emails)()
    with pytest.raises(sqlwatch.NPlusOneDetected, match=r"lazy load of User\.addresses"):
        await sqlwatch.assert_no_n_plus_one()(emails)()

    accepted = sqlwatch.assert_no_n_plus_one()(sqlwatch.ignore_n_plus_one("User.*")(emails))
    assert len(await accepted()) == 6
    assert len(await sqlwatch.assert_max_queries(4)(emails)()) == 6


async def test_assertions_work_with_async_with(
    make_session: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(sqlwatch.NPlusOneDetected, match=r"lazy load of User\.addresses"):  # noqa: PT012
        async with sqlwatch.assert_no_n_plus_one(), make_session() as session:
            for user in (await session.scalars(select(User))).all():
                await user.awaitable_attrs.addresses

    async with sqlwatch.assert_max_queries(1) as w, make_session() as session:
        await session.scalars(select(User))
    assert w.query_count == 1
