"""Never breaking the host: a statement re-entering sqlwatch from a signal handler,
a fork while another thread processes a batch, a vanished working directory, and
engines the application drops."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

import sqlwatch

SIGNAL_WHILE_A_REPORT_IS_BUILT = """
import faulthandler, os, signal
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
import sqlwatch
import sqlwatch.scope

faulthandler.dump_traceback_later(10, exit=True)  # a hang ends the process
engine = create_engine("sqlite://")
sqlwatch.instrument(engine, exporters=())
side = engine.connect()
with engine.connect() as conn:
    for i in range(5):
        conn.execute(text(f"SELECT {i}"))
handled = []

def on_signal(signum, frame):
    # A worker's handler that marks its job in the database; the table is gone.
    try:
        side.execute(text("UPDATE jobs SET state = 'interrupted'"))
    except OperationalError:
        handled.append(signum)

build_statement = sqlwatch.scope.to_statement

def interrupted(*args, **kwargs):
    if not handled:  # the signal arrives while the report is built
        os.kill(os.getpid(), signal.SIGUSR1)
    return build_statement(*args, **kwargs)

signal.signal(signal.SIGUSR1, on_signal)
sqlwatch.scope.to_statement = interrupted
report = sqlwatch.report()
print("done", len(handled), report.errors)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_handler_statement_while_a_report_is_built() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_WHILE_A_REPORT_IS_BUILT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip() == "done 1 {'OperationalError': 1}", done.stderr[-2000:]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_another_thread_processes_a_batch_can_watch(
    sqlite_engine: Engine,
) -> None:
    from sqlwatch._pipeline import PIPELINE

    sqlwatch.instrument(sqlite_engine, exporters=())
    processing, forked = threading.Event(), threading.Event()

    def other_thread_processing_a_batch() -> None:
        with PIPELINE.lock:  # what Pipeline.flush holds while it analyzes a batch
            processing.set()
            forked.wait(2)  # a batch ends: a fork that waits for it goes ahead then

    worker = threading.Thread(target=other_thread_processing_a_batch, daemon=True)
    worker.start()
    processing.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: one job in a watch, and out
        try:
            import signal

            signal.alarm(10)  # a hang ends the child
            with sqlwatch.watch("child job"):
                pass
        finally:
            os._exit(0)
    forked.set()
    worker.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)  # not killed by its alarm: it did not hang
    assert os.WEXITSTATUS(status) == 0


def test_reports_survive_a_deleted_working_directory(
    sqlite_engine: Engine,
    tmp_path: Path,
    production_mode: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqlwatch.instrument(sqlite_engine, exporters=())
    gone = tmp_path / "release-1"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with sqlwatch.watch(capture_call_sites=True) as w, sqlite_engine.connect() as conn:
        conn.execute(text("SELECT 1"))

    [statement] = w.report.statements
    assert statement.call_site is not None
    assert __file__ in statement.call_site  # the absolute path, as it cannot be relative
    assert sqlwatch.report().query_count >= 1


def test_an_instrumented_engine_the_application_drops_is_freed(tmp_path: Path) -> None:
    from sqlwatch._state import STATE

    def one_job(n: int) -> weakref.ref[Engine]:
        engine = create_engine(f"sqlite:///{tmp_path / f'job{n}.db'}")
        sqlwatch.instrument(engine, exporters=())
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return weakref.ref(engine)

    jobs = [one_job(n) for n in range(3)]
    gc.collect()

    assert [job() for job in jobs] == [None, None, None]
    sqlwatch.report()  # a report (or the next instrument()) forgets their trackers
    assert not STATE.trackers
    # the next job's engine is watched as the first was, under its plain name
    engine = create_engine(f"sqlite:///{tmp_path / 'job0.db'}")
    handle = sqlwatch.instrument(engine, exporters=())
    assert handle.name == f"sqlite:///{tmp_path / 'job0.db'}"
    with sqlwatch.watch() as w, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert w.query_count == 1
    engine.dispose()
