"""``watch()`` with asyncio: ``async with``, async decorators, and which task owns a statement."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import sqlwatch


@pytest.fixture
async def adb(async_engine: AsyncEngine) -> AsyncEngine:
    sqlwatch.instrument(async_engine)
    async with async_engine.connect() as conn:
        await conn.execute(text("SELECT 0"))  # dialect set-up happens here, not in tests
    return async_engine


async def run(engine: AsyncEngine, *statements: str) -> None:
    async with engine.connect() as conn:
        for sql in statements:
            await conn.execute(text(sql))


async def test_async_with(adb: AsyncEngine) -> None:
    await run(adb, "SELECT 'before'")
    async with sqlwatch.watch("async page") as w:
        await run(adb, "SELECT 1", "SELECT 2")
        assert w.report.query_count == 2  # live
    await run(adb, "SELECT 'after'")

    assert [s.sql for s in w.queries] == ["SELECT 1", "SELECT 2"]
    assert w.report.name == "async page"


async def test_plain_with_works_in_async_code(adb: AsyncEngine) -> None:
    with sqlwatch.watch() as w:
        await run(adb, "SELECT 1")
    assert w.query_count == 1


async def test_async_decorator(adb: AsyncEngine) -> None:
    watcher = sqlwatch.watch("handler")

    @watcher
    async def handler(n: int) -> int:
        await run(adb, *[f"SELECT {i}" for i in range(n)])
        return n

    assert inspect.iscoroutinefunction(handler)
    assert await handler(2) == 2
    assert watcher.query_count == 2
    assert await handler(3) == 3
    assert watcher.query_count == 3
    summary = next(s for s in sqlwatch.report().scopes if s.name == "handler")
    assert (summary.runs, summary.query_count) == (2, 5)


async def test_async_decorator_exception_passes_through(adb: AsyncEngine) -> None:
    watcher = sqlwatch.watch()

    @watcher
    async def broken() -> None:
        await run(adb, "SELECT 1")
        raise LookupError("from the app")

    with pytest.raises(LookupError, match="from the app"):
        await broken()
    assert watcher.query_count == 1


async def test_nested_async_watches(adb: AsyncEngine) -> None:
    async with sqlwatch.watch() as outer:
        await run(adb, "SELECT 1")
        async with sqlwatch.watch() as inner:
            await run(adb, "SELECT 2")
    assert [s.sql for s in inner.queries] == ["SELECT 2"]
    assert [s.sql for s in outer.queries] == ["SELECT 1", "SELECT 2"]


async def test_statements_land_in_the_watch_of_the_awaiting_task(adb: AsyncEngine) -> None:
    """Two tasks take turns on the same engine; each watch sees only its own task."""
    turns = [asyncio.Event() for _ in range(6)]
    turns[0].set()

    async def task(name: str, my_turns: list[int]) -> sqlwatch.Watch:
        async with sqlwatch.watch(name) as w, adb.connect() as conn:
            for turn in my_turns:
                await turns[turn].wait()
                await conn.execute(text(f"SELECT '{name}', {turn}"))
                if turn + 1 < len(turns):
                    turns[turn + 1].set()
        return w

    a, b = await asyncio.gather(task("a", [0, 2, 4]), task("b", [1, 3, 5]))

    assert [s.sql for s in a.queries] == [f"SELECT 'a', {t}" for t in (0, 2, 4)]
    assert [s.sql for s in b.queries] == [f"SELECT 'b', {t}" for t in (1, 3, 5)]


async def test_tasks_created_inside_a_watch_belong_to_it(adb: AsyncEngine) -> None:
    async def query(n: int) -> None:
        await run(adb, f"SELECT {n}")

    started_outside = asyncio.Event()

    async def outside() -> None:
        await started_outside.wait()
        await run(adb, "SELECT 'outside'")

    background = asyncio.create_task(outside())  # created before the watch: not its own
    async with sqlwatch.watch() as w:
        started_outside.set()
        await asyncio.gather(*(query(n) for n in range(5)))
        await background

    assert sorted(s.sql for s in w.queries) == sorted(f"SELECT {n}" for n in range(5))


async def test_decorated_async_generator_counts_the_statements_of_its_body(
    adb: AsyncEngine,
) -> None:
    """An async generator's body runs while it is iterated: the watch follows the
    iteration (not the call, which runs nothing), and the caller's statements
    between two items are not the generator's."""
    watcher = sqlwatch.watch("stream")

    @watcher
    async def stream(n: int) -> AsyncIterator[int]:
        try:
            for i in range(n):
                await run(adb, f"SELECT {i}")
                yield i
        finally:
            await run(adb, "SELECT 'cleanup'")

    assert inspect.isasyncgenfunction(stream)
    async with sqlwatch.watch() as caller:
        items = []
        async for item in stream(2):
            await run(adb, "SELECT 'caller'")
            items.append(item)
    assert items == [0, 1]
    assert [s.sql for s in watcher.queries] == ["SELECT 0", "SELECT 1", "SELECT 'cleanup'"]
    assert caller.query_count == 5

    early = stream(5)
    assert await early.__anext__() == 0
    await early.aclose()
    assert [s.sql for s in watcher.queries] == ["SELECT 0", "SELECT 'cleanup'"]
