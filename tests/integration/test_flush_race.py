"""A watch read or closed while another thread is processing its statements.

The pipeline's buffer is shared: any thread whose statement fills it (or needs
attention at once: slow, failed) takes every buffered statement, this thread's
included, and hands each to its scopes under the pipeline lock. A watch that
is read or closed meanwhile finds the buffer empty, and ``Pipeline.flush``
returns at once without waiting for the flush under way: the live count misses
the statements in flight, and a closing watch drops them for good
(``Scope.add_batch`` ignores a closed scope).

The other thread's flush is held deterministically: its engine has an exporter
whose slow-query hook (called while that flush holds the pipeline lock) blocks
until the watch has been read, or for a second at most, so that a fix that
waits for the flush cannot deadlock the test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

import sqlwatch
from sqlwatch import Statement
from sqlwatch.exporters.base import Exporter

HOLD_AT_MOST_S = 1.0


class HoldsTheFlush(Exporter):
    """Blocks the flush that reports a slow query, until released."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def on_slow_query(self, statement: Statement, scope: str) -> None:
        self.inside.set()
        self.release.wait(HOLD_AT_MOST_S)


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[Engine, Engine, HoldsTheFlush]]:
    mine = create_engine(f"sqlite:///{tmp_path / 'mine.db'}")
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    holder = HoldsTheFlush()
    sqlwatch.instrument(mine, exporters=())
    sqlwatch.instrument(other, exporters=[holder], slow_query_ms=0)  # every statement flushes
    holder.release.set()  # set-up statements pass
    for engine in (mine, other):
        with engine.connect() as conn:
            conn.execute(text("SELECT 0"))
    holder.inside.clear()
    holder.release.clear()
    yield mine, other, holder
    holder.release.set()
    mine.dispose()
    other.dispose()


def _flush_from_another_thread(other: Engine, holder: HoldsTheFlush) -> threading.Thread:
    def run() -> None:
        with other.connect() as conn:
            conn.execute(text("SELECT 'other thread'"))

    thread = threading.Thread(target=run)
    thread.start()
    assert holder.inside.wait(10)  # that flush now holds this thread's statement
    return thread


def test_live_count_includes_statements_another_thread_is_processing(
    engines: tuple[Engine, Engine, HoldsTheFlush],
) -> None:
    mine, other, holder = engines
    with sqlwatch.watch() as w:
        with mine.connect() as conn:
            conn.execute(text("SELECT 'mine'"))
        thread = _flush_from_another_thread(other, holder)
        live = w.query_count
        holder.release.set()
    thread.join()
    assert live == 1


def test_closing_watch_keeps_statements_another_thread_is_processing(
    engines: tuple[Engine, Engine, HoldsTheFlush],
) -> None:
    mine, other, holder = engines
    with sqlwatch.watch() as w:
        with mine.connect() as conn:
            conn.execute(text("SELECT 'mine'"))
        thread = _flush_from_another_thread(other, holder)
    holder.release.set()
    thread.join()
    assert [s.sql for s in w.queries] == ["SELECT 'mine'"]
    assert w.query_count == 1
