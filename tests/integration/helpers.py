"""Small helpers shared by the integration tests (no fixtures: those live in conftest)."""

from __future__ import annotations

import gc
import io
import logging
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

import sqlwatch
from tests.models import Base, seed

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
HEX = re.compile(r"^[0-9a-f]+$")


def call_site_below(lines: int = 1) -> str:
    """The call site sqlwatch should report for a statement ``lines`` below the caller.

    Written the way sqlwatch formats it: ``path relative to the working
    directory:line in function``.
    """
    frame = sys._getframe(1)
    path = os.path.relpath(frame.f_code.co_filename)
    return f"{path}:{frame.f_lineno + lines} in {frame.f_code.co_name}"


def parse_iso(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value.replace("Z", "+00:00"))


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def sleep_sql(engine: Engine, ms: int) -> str:
    """A statement that takes at least ``ms`` milliseconds on the engine's database.

    SQLite gets a ``sleep_ms`` function registered per connection by
    ``install_sleep``; PostgreSQL has ``pg_sleep``.
    """
    if is_sqlite(engine):
        return f"SELECT sleep_ms({ms})"
    return f"SELECT pg_sleep({ms / 1000})"


def install_sleep(engine: Engine) -> None:
    """Give SQLite connections a ``sleep_ms(ms)`` function (nothing to do on PostgreSQL)."""
    if not is_sqlite(engine):
        return
    import time

    from sqlalchemy import event

    def _sleep_ms(ms: int) -> int:
        time.sleep(ms / 1000)
        return ms

    @event.listens_for(engine, "connect")
    def _register(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.create_function("sleep_ms", 1, _sleep_ms)  # type: ignore[attr-defined]

    engine.dispose()  # connections made before this have no sleep_ms


def json_log_stream() -> Iterator[io.StringIO]:
    """The body of a fixture (``yield from json_log_stream()``): the ``sqlwatch``
    logger at DEBUG into a ``JSONFormatter`` stream, put back as it was after."""
    logger = logging.getLogger("sqlwatch")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(sqlwatch.JSONFormatter())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_in_fresh_interpreter(
    tmp_path: Path, prelude: str, body: str
) -> subprocess.CompletedProcess[str]:
    """Run ``prelude`` then ``body`` (each dedented) as a script in ``tmp_path``, with
    warnings as errors; it must exit 0. For what one process can do only once
    (the global OpenTelemetry providers, ``atexit``)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(prelude) + textwrap.dedent(body))
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return done


def seeded_sessions(engine: Engine) -> sessionmaker[Session]:
    """Seeded tables (3 users, 2 addresses each...) on an instrumented engine, and
    sessions bound to it: the body of the ORM tests' ``db`` fixtures."""
    Base.metadata.create_all(engine)
    make = sessionmaker(engine)
    with make() as session:
        seed(session)
    sqlwatch.instrument(engine, exporters=())
    return make


SQLWATCH_FILES = os.path.join(os.path.dirname(sqlwatch.__file__), "*")


def bytes_that_outlive(run: Callable[[], None]) -> tuple[int, int]:
    """Bytes allocated while ``run`` ran (and a report was taken after it) that are
    still alive at the end: (sqlwatch's, everyone's). What sqlwatch keeps per
    statement or per checkout would show here; tracing only a window keeps the
    test fast, as a leak of a few bytes per event shows just as well in it."""
    sqlwatch.report()  # process everything pending before tracing starts
    gc.collect()
    tracemalloc.start()
    try:
        run()
        report = sqlwatch.report()
        del report
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    everything = sum(stat.size for stat in snapshot.statistics("filename"))
    ours = snapshot.filter_traces([tracemalloc.Filter(True, SQLWATCH_FILES)])
    return sum(stat.size for stat in ours.statistics("filename")), everything
