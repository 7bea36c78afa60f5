"""Every pool class SQLAlchemy ships for real use: what applies is counted, what
does not is ``None``."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool, QueuePool, SingletonThreadPool, StaticPool

import sqlwatch
from tests.integration.pool_helpers import select_one, sqlwatch_listeners

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def url_for(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'classes.db'}"
    from tests.conftest import require_postgres_url

    return require_postgres_url()


def stats_of(engine: Engine) -> sqlwatch.PoolStats:
    handle = sqlwatch.instrument(engine)
    return sqlwatch.report().pools[handle.name]


@pytest.mark.parametrize("kind", BACKENDS)
def test_queue_pool(kind: str, tmp_path: Path) -> None:
    engine = create_engine(url_for(kind, tmp_path), poolclass=QueuePool, pool_size=3)
    try:
        sqlwatch.instrument(engine)
        select_one(engine)
        stats = stats_of(engine)
        assert stats.pool_class == "QueuePool"
        assert (stats.size, stats.max_overflow, stats.timeouts) == (3, 10, 0)
        assert (stats.checkouts, stats.checkins, stats.connects) == (1, 1, 1)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", BACKENDS)
def test_null_pool_has_no_size_overflow_or_timeouts(kind: str, tmp_path: Path) -> None:
    engine = create_engine(url_for(kind, tmp_path), poolclass=NullPool)
    try:
        sqlwatch.instrument(engine)
        for _ in range(3):
            select_one(engine)
        held = [engine.connect() for _ in range(2)]
        stats = stats_of(engine)
        assert stats.pool_class == "NullPool"
        assert (stats.size, stats.max_overflow, stats.timeouts) == (None, None, None)
        assert (stats.checkouts, stats.checkins, stats.checked_out) == (5, 3, 2)
        assert stats.peak_checked_out == 2
        assert stats.connects == 5  # a new DBAPI connection every time
        assert stats.wait_ms["max"] > 0  # the wait is the time to connect
        for connection in held:
            connection.close()
        assert stats_of(engine).checked_out == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_pool_assigned_by_hand_is_followed_from_the_next_scope(
    kind: str, tmp_path: Path
) -> None:
    engine = create_engine(url_for(kind, tmp_path), poolclass=QueuePool, pool_size=2)
    donor = create_engine(url_for(kind, tmp_path), poolclass=NullPool)
    try:
        handle = sqlwatch.instrument(engine)
        select_one(engine)
        old = engine.pool
        engine.pool = donor.pool  # as a forked worker might
        old.dispose()
        with sqlwatch.watch() as w:
            for _ in range(3):
                select_one(engine)
        for stats in (w.report.pools[handle.name], stats_of(engine)):
            assert stats.pool_class == "NullPool"
            assert (stats.size, stats.max_overflow, stats.timeouts) == (None, None, None)
        stats = w.report.pools[handle.name]
        assert (stats.checkouts, stats.checkins, stats.connects) == (3, 3, 3)
        stats = stats_of(engine)  # the process-wide counts add up across both pools
        assert (stats.checkouts, stats.checkins, stats.connects) == (4, 4, 4)
        sqlwatch.uninstrument(engine)
        for pool in (old, engine.pool):
            assert sqlwatch_listeners(pool) == []
        select_one(engine)
    finally:
        engine.dispose()
        donor.dispose()


def test_static_pool_shares_one_connection() -> None:
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    try:
        sqlwatch.instrument(engine)
        select_one(engine)
        select_one(engine)
        stats = stats_of(engine)
        assert stats.pool_class == "StaticPool"
        assert (stats.size, stats.max_overflow, stats.timeouts) == (None, None, None)
        assert (stats.checkouts, stats.checkins, stats.connects) == (2, 2, 1)
        # two callers at once: SQLAlchemy takes the one connection back once, when
        # the first gives it back; both checkouts end there
        first, second = engine.connect(), engine.connect()
        stats = stats_of(engine)
        assert (stats.checked_out, stats.peak_checked_out) == (2, 2)
        first.close()
        second.close()
        stats = stats_of(engine)
        assert (stats.checkouts, stats.checkins, stats.checked_out) == (4, 4, 0)
        assert sqlwatch.report().leaks == ()
    finally:
        engine.dispose()


def test_singleton_thread_pool_lends_one_connection_per_thread() -> None:
    engine = create_engine("sqlite://", poolclass=SingletonThreadPool, pool_size=4)
    try:
        sqlwatch.instrument(engine)
        outer = engine.connect()
        inner = engine.connect()  # the same connection again: not a new checkout
        inner.execute(text("select 1"))
        inner.close()
        outer.close()
        stats = stats_of(engine)
        assert stats.pool_class == "SingletonThreadPool"
        assert (stats.size, stats.max_overflow, stats.timeouts) == (4, None, None)
        assert (stats.checkouts, stats.checkins, stats.checked_out) == (1, 1, 0)
        assert stats.peak_checked_out == 1
    finally:
        engine.dispose()


def test_a_collected_connection_is_a_leak_with_every_sync_pool_class(tmp_path: Path) -> None:
    engines = [
        create_engine(f"sqlite:///{tmp_path / 'queue.db'}", poolclass=QueuePool),
        create_engine(f"sqlite:///{tmp_path / 'null.db'}", poolclass=NullPool),
        create_engine("sqlite://", poolclass=SingletonThreadPool),
    ]
    try:
        for engine in engines:
            sqlwatch.instrument(engine)
            dropped = engine.connect()
            dropped.execute(text("select 1"))
            del dropped
            gc.collect()
        kinds = [(leak.engine, leak.kind) for leak in sqlwatch.report().leaks]
        names = list(sqlwatch.report().pools)
        assert kinds == [(name, "garbage_collected") for name in names]
        for stats in sqlwatch.report().pools.values():
            assert (stats.checkouts, stats.checkins, stats.checked_out) == (1, 1, 0)
    finally:
        for engine in engines:
            engine.dispose()


def test_uninstrument_with_every_pool_class(tmp_path: Path) -> None:
    engines = [
        create_engine(f"sqlite:///{tmp_path / 'queue.db'}", poolclass=QueuePool),
        create_engine(f"sqlite:///{tmp_path / 'null.db'}", poolclass=NullPool),
        create_engine("sqlite://", poolclass=StaticPool),
        create_engine("sqlite://", poolclass=SingletonThreadPool),
    ]
    try:
        for engine in engines:
            sqlwatch.instrument(engine)
            select_one(engine)
            assert sqlwatch_listeners(engine.pool)
            sqlwatch.uninstrument(engine)
            assert sqlwatch_listeners(engine.pool) == []
            select_one(engine)
    finally:
        for engine in engines:
            engine.dispose()
