"""``OTelExporter`` on an ``AsyncEngine`` and a sync engine instrumented together.

Exactly one span per statement, each under the span current in its own task,
and no span left open, whichever engine ran the statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

import sqlwatch
from tests.integration.otel_helpers import OTel, otel_sdk
from tests.models import Base, User


@pytest.fixture
def otel() -> Iterator[OTel]:
    yield from otel_sdk()


async def test_sync_and_async_engines_one_span_per_statement(
    sqlite_engine: Engine, async_engine: AsyncEngine, otel: OTel
) -> None:
    Base.metadata.create_all(sqlite_engine)
    async with async_engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sqlwatch.instrument(sqlite_engine, exporters=[otel.exporter])
    sqlwatch.instrument(async_engine, exporters=[otel.exporter])

    async def task(n: int) -> tuple[int, int]:
        with otel.tracer.start_as_current_span(f"task {n}") as parent:
            async with async_engine.connect() as connection:
                for _ in range(3):
                    await connection.execute(select(User.id))
                await connection.execute(text("SELECT 1"))
            return n, parent.get_span_context().span_id

    with sqlwatch.watch() as w:
        sync_span = otel.tracer.start_as_current_span("sync")
        with sync_span as sync_parent, sqlite_engine.connect() as connection:
            connection.execute(select(User.name)).all()
        parents = dict(await asyncio.gather(*(task(n) for n in range(4))))

    spans = otel.spans()
    assert len(spans) == w.query_count
    assert otel.open_spans.started == otel.open_spans.ended
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    by_parent: dict[int, list[str]] = {}
    for span in spans:
        assert span.parent is not None
        by_parent.setdefault(span.parent.span_id, []).append(span.name)
    assert by_parent[sync_parent.get_span_context().span_id] == ["SELECT users"]
    for span_id in parents.values():
        names = by_parent[span_id]
        assert names.count("SELECT users") == 3
        assert names.count("SELECT") == 1
    systems = {dict(s.attributes or {})["db.system.name"] for s in spans}
    expected = (
        {"sqlite", "postgresql"} if async_engine.dialect.name == "postgresql" else {"sqlite"}
    )
    assert systems == expected


async def test_async_failed_statement_is_an_error_span(
    async_engine: AsyncEngine, otel: OTel
) -> None:
    sqlwatch.instrument(async_engine, exporters=[otel.exporter])
    async with async_engine.connect() as connection:
        try:
            await connection.execute(text("SELECT * FROM missing_table"))
        except Exception as exc:
            raised = exc
        else:
            raise AssertionError("the statement should have failed")
    span = otel.span("SELECT missing_table")
    assert span.status.status_code.name == "ERROR"
    attributes = dict(span.attributes or {})
    assert type(raised).__name__ in {"OperationalError", "ProgrammingError"}
    # the driver's own class, not the one SQLAlchemy's async adapter raises around it
    driver_error = raised.orig.__cause__ or raised.orig  # type: ignore[attr-defined]
    assert (
        attributes["error.type"]
        == f"{type(driver_error).__module__}.{type(driver_error).__qualname__}"
    )
    if async_engine.dialect.name == "postgresql":
        assert attributes["db.response.status_code"] == "42P01"  # undefined_table
    assert otel.open_spans.started == otel.open_spans.ended
