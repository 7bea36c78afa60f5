"""``JSONExporter``: scope reports at scope end, the process-wide report at exit and on demand.

Files are read back with ``sqlwatch.Report.load``; exit behaviour runs in a
fresh interpreter, where ``atexit`` really fires.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.exporters.json_report import JSONExporter
from tests.integration.helpers import run_in_fresh_interpreter
from tests.models import Base, User, seed


@pytest.fixture
def db(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    return engine


def test_watch_report_written_when_the_scope_ends(db: Engine, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "watch.json"
    sqlwatch.instrument(db, exporters=())
    watch = sqlwatch.watch("checkout", exporters=[f"json:{target}"])
    with watch as w, db.connect() as connection:
        connection.execute(select(User.id)).all()
        connection.execute(select(User.name).where(User.id == 2)).all()
        assert not target.exists()  # written at the end, not before
    loaded = sqlwatch.Report.load(target)
    assert loaded.name == "checkout"
    assert loaded.query_count == w.report.query_count == 2
    assert [s.fingerprint for s in loaded.statements] == [q.fingerprint for q in w.queries]
    assert json.loads(target.read_text())["schema_version"] == 1


def test_the_file_is_replaced_in_one_rename(db: Engine, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("previous content")
    before = os.stat(target)
    sqlwatch.instrument(db, exporters=())
    with sqlwatch.watch(exporters=[JSONExporter(target)]), db.connect() as connection:
        connection.execute(select(User.id)).all()
    after = os.stat(target)
    # a new file took the old one's name: readers see the old report or the new one
    assert after.st_ino != before.st_ino
    assert sqlwatch.Report.load(target).query_count == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.json")] == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_report_file_gets_the_mode_of_any_new_file(tmp_path: Path) -> None:
    """Readable by the dashboard or CI step that reads it, as the umask allows,
    not private to the writing user."""
    umask = os.umask(0o022)
    try:
        target = sqlwatch.Report(name="r").save(tmp_path / "report.json")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_report_written_over_a_restricted_file_stays_restricted(tmp_path: Path) -> None:
    """A report with captured parameters, chmod 600 by its owner, must not become
    world-readable at the next write."""
    target = sqlwatch.Report(name="r").save(tmp_path / "report.json")
    os.chmod(target, 0o600)
    umask = os.umask(0o022)
    try:
        sqlwatch.Report(name="r2").save(target)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert sqlwatch.Report.load(target).name == "r2"


def test_literals_are_normalized_unless_parameters_were_captured(
    db: Engine, tmp_path: Path
) -> None:
    plain, kept = tmp_path / "plain.json", tmp_path / "kept.json"
    sqlwatch.instrument(db, exporters=())
    sql = "SELECT id FROM users WHERE name = 'user1'"
    with db.connect() as connection:
        with sqlwatch.watch(exporters=[JSONExporter(plain)], slow_query_ms=0):
            connection.execute(text(sql)).all()
            connection.execute(text(sql)).all()  # a duplicate too
        with sqlwatch.watch(exporters=[JSONExporter(kept)], capture_params=True):
            connection.execute(text(sql)).all()
    report = sqlwatch.Report.load(plain)
    assert "user1" not in plain.read_text()
    assert report.statements[0].sql == report.statements[0].normalized
    assert report.slow_queries[0].sql == report.statements[0].normalized
    assert report.duplicates[0].sql == report.statements[0].normalized
    assert sqlwatch.Report.load(kept).statements[0].sql == sql


def test_process_wide_report_on_demand(db: Engine, tmp_path: Path) -> None:
    target = tmp_path / "process.json"
    exporter = JSONExporter(target)
    sqlwatch.instrument(db, exporters=[exporter])
    with db.connect() as connection:
        connection.execute(select(User.id)).all()
    assert exporter.flush() == target
    assert sqlwatch.Report.load(target).query_count == sqlwatch.report().query_count
    custom = sqlwatch.Report(name="custom", query_count=7)
    exporter.export(custom)
    assert sqlwatch.Report.load(target).query_count == 7


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    prelude = f"""
        import sqlwatch
        from sqlalchemy import create_engine, text

        engine = create_engine("sqlite:///{tmp_path / "app.db"}")
        """
    done = run_in_fresh_interpreter(tmp_path, prelude, body)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_process_wide_report_written_at_exit(tmp_path: Path) -> None:
    target = tmp_path / "at-exit.json"
    _run(
        tmp_path,
        f"""
        other = create_engine("sqlite:///{tmp_path / "other.db"}")
        sqlwatch.instrument(engine, exporters=["json:{target}"])
        sqlwatch.instrument(other, exporters=["logging", "json:{target}"])
        with engine.connect() as connection:
            for _ in range(3):
                connection.execute(text("SELECT 1"))
        with other.connect() as connection:
            connection.execute(text("SELECT 2"))
        """,
    )
    report = sqlwatch.Report.load(target)
    assert report.name == "process"
    assert report.query_count == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".at-exit")] == []


def test_a_relative_path_is_where_the_working_directory_was_when_instrumenting(
    tmp_path: Path,
) -> None:
    (tmp_path / "elsewhere").mkdir()
    _run(
        tmp_path,
        f"""
        import os
        os.chdir({str(tmp_path)!r})
        sqlwatch.instrument(engine, exporters=["json:relative.json"])
        os.chdir("elsewhere")  # the application moves on before it exits
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        """,
    )
    assert sqlwatch.Report.load(tmp_path / "relative.json").query_count == 1
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_reset_unregisters_the_exit_write(tmp_path: Path) -> None:
    target = tmp_path / "never.json"
    _run(
        tmp_path,
        f"""
        sqlwatch.instrument(engine, exporters=["json:{target}"])
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        sqlwatch.reset()
        """,
    )
    assert not target.exists()


def test_a_path_under_tilde_is_in_the_home_folder(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))  # Windows
    monkeypatch.chdir(work)
    sqlwatch.instrument(db, exporters=())
    with sqlwatch.watch(exporters=["json:~/reports/watch.json"]), db.connect() as connection:
        connection.execute(select(User.id)).all()
    assert sqlwatch.Report.load(home / "reports" / "watch.json").query_count == 1
    assert list(work.iterdir()) == []  # no folder named "~"


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_an_unwritable_path_at_exit_leaves_the_other_files_written(tmp_path: Path) -> None:
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    fine = tmp_path / "fine.json"
    done = run_in_fresh_interpreter(
        tmp_path,
        f"""
        import sqlwatch
        from sqlalchemy import create_engine, text

        engine = create_engine("sqlite:///{tmp_path / "app.db"}")
        """,
        f"""
        sqlwatch.instrument(engine, exporters=["json:{tmp_path / "loop-a" / "r.json"}"])
        other = create_engine("sqlite:///{tmp_path / "other.db"}")
        sqlwatch.instrument(other, exporters=["json:{fine}"])
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        """,
    )
    assert sqlwatch.Report.load(fine).query_count == 1
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "sqlwatch internal error in JSONExporter at exit" in done.stderr
