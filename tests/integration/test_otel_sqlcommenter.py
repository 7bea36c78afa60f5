"""The opt-in ``sqlcommenter`` option: the current ``traceparent`` reaches the database.

What the database received is read from the database side: SQLite's own trace
callback (``sqlite3.Connection.set_trace_callback``) and PostgreSQL's
``current_query()``, which returns the text of the statement running it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import Connection

import sqlwatch
from tests.integration.helpers import is_sqlite
from tests.integration.otel_helpers import OTel, otel_sdk
from tests.models import Base, User


@pytest.fixture
def otel() -> Iterator[OTel]:
    yield from otel_sdk()


TRACEPARENT = re.compile(r" /\*traceparent='00-([0-9a-f]{32})-([0-9a-f]{16})-0[0-3]'\*/$")


class Received:
    """The statements the database received, as it saw them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite: list[str] = []
        if is_sqlite(engine):

            @event.listens_for(engine, "connect")
            def _trace(dbapi_connection: Any, _record: object) -> None:
                dbapi_connection.set_trace_callback(self.sqlite.append)

            engine.dispose()

    def run(self, connection: Connection, where: str = "", **params: Any) -> str:
        """Run a one-row SELECT on ``users`` and return the text the database received."""
        if is_sqlite(self.engine):
            self.sqlite.clear()
            connection.execute(text(f"SELECT count(name) FROM users {where}"), params).all()
            (received,) = [s for s in self.sqlite if "SELECT" in s.upper()]
            return received
        sql = f"SELECT current_query(), count(name) FROM users {where}"
        return str(connection.execute(text(sql), params).one()[0])


@pytest.fixture
def received(engine: Engine) -> Received:
    Base.metadata.create_all(engine)
    return Received(engine)


def test_traceparent_of_the_current_span_is_appended(
    engine: Engine, received: Received, otel: OTel
) -> None:
    sqlwatch.instrument(engine, sqlcommenter=True, exporters=[otel.exporter])
    with engine.connect() as connection:
        with otel.tracer.start_as_current_span("request") as request:
            sent = received.run(connection, "WHERE id = :id", id=1)
        match = TRACEPARENT.search(sent)
        assert match is not None, sent
        context = request.get_span_context()
        assert match.group(1) == f"{context.trace_id:032x}"
        assert match.group(2) == f"{context.span_id:016x}"
        # no current span: nothing to propagate, the statement goes as it is
        outside = received.run(connection, "WHERE id = :id", id=2)
        assert "traceparent" not in outside


def test_off_by_default(engine: Engine, received: Received, otel: OTel) -> None:
    sqlwatch.instrument(engine, exporters=[otel.exporter])
    with engine.connect() as connection, otel.tracer.start_as_current_span("request"):
        sent = received.run(connection)
    assert "traceparent" not in sent
    assert "/*" not in sent


def test_a_watch_can_turn_it_on(engine: Engine, received: Received, otel: OTel) -> None:
    sqlwatch.instrument(engine, exporters=[otel.exporter])
    with engine.connect() as connection, otel.tracer.start_as_current_span("request"):
        with sqlwatch.watch(sqlcommenter=True):
            inside = received.run(connection)
        after = received.run(connection)
    assert TRACEPARENT.search(inside)
    assert "traceparent" not in after


def test_a_watch_comments_only_the_engines_it_watches(
    engine: Engine, received: Received, otel: OTel
) -> None:
    other = create_engine("sqlite://")
    sqlwatch.instrument(engine, exporters=[otel.exporter])
    sqlwatch.instrument(other, exporters=())
    span = otel.tracer.start_as_current_span("request")
    only_other = sqlwatch.watch(engines=[other], sqlcommenter=True)
    with engine.connect() as connection, span, only_other:
        sent = received.run(connection)
    assert "traceparent" not in sent
    other.dispose()


def test_the_comment_changes_no_fingerprint(
    engine: Engine, received: Received, otel: OTel
) -> None:
    sqlwatch.instrument(engine, sqlcommenter=True, exporters=[otel.exporter])
    with sqlwatch.watch() as w, engine.connect() as connection:
        connection.execute(select(User.name).where(User.id == 1)).all()
        with otel.tracer.start_as_current_span("a"):
            connection.execute(select(User.name).where(User.id == 1)).all()
        with otel.tracer.start_as_current_span("b"):
            connection.execute(select(User.name).where(User.id == 1)).all()
    plain, first, second = w.queries
    assert plain.fingerprint == first.fingerprint == second.fingerprint
    assert plain.sql == first.sql == second.sql
    assert "traceparent" not in first.sql
    (stats,) = [f for f in w.report.fingerprints if f.fingerprint == plain.fingerprint]
    assert stats.count == 3
    names = [s.name for s in otel.spans()]
    assert names == ["SELECT users"] * 3
