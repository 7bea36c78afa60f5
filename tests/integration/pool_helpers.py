"""Helpers for the pool and session tests (fixtures live in the test modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import Pool

from tests.conftest import require_postgres_url

POOL_EVENTS = (
    "connect",
    "first_connect",
    "checkout",
    "checkin",
    "reset",
    "invalidate",
    "soft_invalidate",
    "close",
    "detach",
    "close_detached",
)


def make_engine(kind: str, tmp_path: Path, **pool_options: Any) -> Engine:
    """A QueuePool engine on a file SQLite database or the test PostgreSQL server."""
    url = f"sqlite:///{tmp_path / 'pool.db'}" if kind == "sqlite" else require_postgres_url()
    return create_engine(url, **pool_options)


def is_ours(fn: Any) -> bool:
    owner = getattr(fn, "__self__", None)
    module = getattr(fn, "__module__", "") or ""
    if owner is not None:
        module = type(owner).__module__
    return module.startswith("sqlwatch")


def sqlwatch_listeners(pool: Pool) -> list[str]:
    """Every listener of sqlwatch on the pool, and any wrapper on its instance."""
    found = [name for name in ("connect", "_return_conn", "recreate") if name in vars(pool)]
    for name in POOL_EVENTS:
        for fn in getattr(pool.dispatch, name):
            if is_ours(fn):
                found.append(f"{name}: {fn!r}")
    return found


def engine_listeners(engine: Engine) -> list[str]:
    """sqlwatch's listeners among the engine's and its dialect's events, and its
    listeners set on the dialect instance."""
    found = [f"dialect.{name}" for name, fn in vars(engine.dialect).items() if is_ours(fn)]
    for dispatch in (engine.dispatch, engine.dialect.dispatch):
        for name in dispatch._event_names:
            for fn in getattr(dispatch, name):
                if is_ours(fn):
                    found.append(f"{name}: {fn!r}")
    return found


def select_one(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("select 1"))
