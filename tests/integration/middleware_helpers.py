"""What the ASGI and WSGI middleware tests share: the database, the SQL a request
runs, and what the ``Server-Timing`` header and the process-wide report say."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

import sqlwatch
from tests.models import Base, seed

SERVER_TIMING = re.compile(r'^db;dur=\d+\.\d{3};desc="(\d+) queries"$')
ERROR = LookupError("raised by the application")


def seeded_and_instrumented(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    sqlwatch.instrument(engine, exporters=())
    return engine


def run(engine: Engine, n: int) -> None:
    """``n`` statements, as a request handler would run them."""
    with engine.connect() as connection:
        for _ in range(n):
            connection.execute(text("SELECT count(*) FROM users")).scalar()


def endpoints() -> dict[str, sqlwatch.ScopeSummary]:
    """The per-endpoint aggregates of the process-wide report, by name."""
    return {scope.name: scope for scope in sqlwatch.report().scopes}


def queries_in(headers: Any) -> int:
    """The query count of a response's ``Server-Timing`` header."""
    value = headers["Server-Timing"]
    match = SERVER_TIMING.match(value)
    assert match is not None, value
    return int(match.group(1))
