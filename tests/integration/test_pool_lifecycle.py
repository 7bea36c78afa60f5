"""Connections that leave the pool other than by ``close()``: a pre-ping that
finds the connection dead and reconnects inside the checkout, and ``detach()``."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import pytest
from sqlalchemy import text

import sqlwatch
from tests.integration.pool_helpers import make_engine


@pytest.mark.postgres
def test_a_pre_ping_that_reconnects_is_one_checkout_and_no_leak(tmp_path: Path) -> None:
    engine = make_engine("postgresql", tmp_path, pool_size=2, pool_pre_ping=True)
    other = make_engine("postgresql", tmp_path)
    try:
        handle = sqlwatch.instrument(engine, exporters=())
        with engine.connect() as connection:
            pid = connection.execute(text("select pg_backend_pid()")).scalar()
        with other.connect() as killer:
            killer.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        with sqlwatch.watch() as w, engine.connect() as connection:
            assert connection.execute(text("select pg_backend_pid()")).scalar() != pid
        for stats in (w.report.pools[handle.name], sqlwatch.report().pools[handle.name]):
            assert stats.invalidations == 1
            assert stats.checked_out == 0
        assert (w.report.pools[handle.name].checkouts, w.report.pools[handle.name].connects) == (
            1,
            1,
        )
        assert sqlwatch.report().pools[handle.name].checkins == 2
        assert sqlwatch.report().leaks == ()
    finally:
        engine.dispose()
        other.dispose()


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_detached_connection_counts_as_returned(kind: str, tmp_path: Path) -> None:
    engine = make_engine(kind, tmp_path, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        handle = sqlwatch.instrument(engine, exporters=())
        with sqlwatch.watch() as w:
            detached = engine.connect()
            detached.connection.detach()  # leaves the pool for good
            with engine.connect() as connection:  # the pool has room again
                connection.execute(text("select 1"))
            detached.close()
        for stats in (w.report.pools[handle.name], sqlwatch.report().pools[handle.name]):
            assert (stats.checkouts, stats.checkins, stats.checked_out) == (2, 2, 0)
        assert w.report.leaks == ()
    finally:
        engine.dispose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_does_not_count_the_parents_connections(tmp_path: Path) -> None:
    """SQLAlchemy's recipe for a child process: ``dispose(close=False)``, and the
    parent's connections stay the parent's. The child's report must not show them
    checked out, nor report them as leaks once held past the threshold."""
    engine = make_engine("sqlite", tmp_path, pool_size=2)
    handle = sqlwatch.instrument(engine, exporters=(), leak_threshold_s=0.05)
    held = engine.connect()  # out in the parent across the fork
    held.execute(text("select 1"))
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded fork" (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            engine.dispose(close=False)
            with engine.connect() as connection:
                connection.execute(text("select 1"))
            time.sleep(0.1)
            report = sqlwatch.report()
            stats = report.pools[handle.name]
            os.write(writer, json.dumps([stats.checked_out, len(report.leaks)]).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    try:
        with os.fdopen(reader, "rb") as pipe:
            answer = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert json.loads(answer) == [0, 0]
        assert sqlwatch.report().pools[handle.name].checked_out == 1  # the parent's still is
    finally:
        held.close()
        engine.dispose()
