"""Fixtures shared by the whole suite: clean sqlwatch state, real databases.

PostgreSQL comes from ``SQLWATCH_TEST_POSTGRES_URL`` (``eval "$(.ci/start-postgres)"``
locally; ``.ci/run`` in CI). Without it, PostgreSQL tests skip locally and fail
in CI, where a missing server is a broken build, not an excuse.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import sqlwatch
from sqlwatch import _guard
from sqlwatch._guard import raise_internal_errors
from tests.models import Base

POSTGRES_URL = os.environ.get("SQLWATCH_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _clean_sqlwatch() -> Iterator[None]:
    """Every test starts with nothing instrumented, and internal errors raise.

    sqlwatch swallows its own errors in production; here they must fail the
    test that caused them.
    """
    sqlwatch.reset()
    raise_internal_errors(True)
    yield
    raise_internal_errors(False)
    sqlwatch.reset()


def require_postgres_url() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    message = 'SQLWATCH_TEST_POSTGRES_URL is not set (eval "$(.ci/start-postgres)")'
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {message}")
    pytest.skip(message)


def async_url(url: str) -> str:
    return url.replace("+psycopg", "+asyncpg", 1)


@pytest.fixture
def postgres_url() -> str:
    return require_postgres_url()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A file database: real connection pooling, shareable across threads."""
    engine = create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    engine = create_engine(require_postgres_url())
    Base.metadata.drop_all(engine)
    yield engine
    engine.dispose()
    cleanup = create_engine(require_postgres_url())
    Base.metadata.drop_all(cleanup)
    cleanup.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The same test on every real backend."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    else:
        engine = create_engine(require_postgres_url())
        Base.metadata.drop_all(engine)
    yield engine
    if request.param == "postgresql":
        Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(
    params=["sqlite+aiosqlite", pytest.param("postgresql+asyncpg", marks=pytest.mark.postgres)]
)
async def async_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite+aiosqlite":
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    else:
        engine = create_async_engine(async_url(require_postgres_url()))
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
    yield engine
    if request.param == "postgresql+asyncpg":
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
    await engine.dispose()


@pytest.fixture
def production_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Internal errors are swallowed (as for users), and none was logged recently."""
    monkeypatch.setattr(_guard, "_last_logged", {})
    raise_internal_errors(False)
    yield
    raise_internal_errors(True)
