"""``sqlwatch demo``: the page before and after, the findings, the report, bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

import sqlwatch
from sqlwatch._cli import main

BLOG_LINE = r"\S*sqlwatch/_demo/blog\.py:\d+ in "


def check_output(out: str) -> None:
    assert "1) The page as written\n   30 queries, " in out
    for relationship, count, option in (
        ("Post.author", 5, "joinedload(Post.author)"),
        ("Post.comments", 10, "selectinload(Post.comments)"),
        ("Post.tags", 10, "selectinload(Post.tags)"),
    ):
        assert re.search(
            rf"   N\+1: {re.escape(relationship)} loaded one Post at a time \({count} queries\), "
            rf"at {BLOG_LINE}render_post\n        fix: Add \.options\({re.escape(option)}\)",
            out,
        ), relationship
    assert re.search(rf"   duplicate: 2 runs of SELECT .*, at {BLOG_LINE}site_totals\n", out)
    assert re.search(
        rf"   slow query: [0-9.]+ ms, SELECT count\(\*\).*, at {BLOG_LINE}archive_size\n", out
    )
    assert re.search(rf"   connection leak \(unreturned\): .*, checked out at {BLOG_LINE}", out)
    assert "2) The page with the loader options sqlwatch suggests:" in out
    assert "   4 queries, " in out
    assert "   no N+1, no duplicate query, no slow query, no leaked connection" in out
    assert "Queries: 30 before, 4 after (3 N+1 before, 0 N+1 after)." in out


def test_demo_shows_the_n_plus_one_and_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0

    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith(
        "sqlwatch demo: a blog's front page, rendered twice, on SQLite (a temporary file)\n"
    )
    check_output(captured.out)
    assert "Report written" not in captured.out


def test_demo_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out" / "demo.json"
    assert main(["demo", "--json", str(path)]) == 0

    out = capsys.readouterr().out
    assert f"Report written to {path} (read it with: sqlwatch report {path})" in out
    report = sqlwatch.Report.load(path)
    assert {s.name for s in report.scopes} == {"front page, as written", "front page, fixed"}
    assert {f.relationship for f in report.n_plus_one} == {
        "Post.author",
        "Post.comments",
        "Post.tags",
    }
    assert report.query_count >= 34


def test_demo_leaves_nothing_instrumented(capsys: pytest.CaptureFixture[str]) -> None:
    from sqlwatch._state import STATE

    assert main(["demo"]) == 0
    assert STATE.trackers == {}


@pytest.mark.postgres
def test_demo_on_postgresql(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--url", postgres_url]) == 0

    out = capsys.readouterr().out
    assert "on postgresql+psycopg://" in out.splitlines()[0]
    check_output(out)
    engine = create_engine(postgres_url)
    try:
        leftovers = [t for t in inspect(engine).get_table_names() if t.startswith("sqlwatch_demo")]
    finally:
        engine.dispose()
    assert leftovers == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere",
            "sqlwatch: error: cannot connect to "
            "postgresql+psycopg://someone:***@127.0.0.1:1/nowhere: ",
        ),
        ("not a url", "sqlwatch: error: --url is not a usable SQLAlchemy URL: "),
        ("nosuchdb://x", "sqlwatch: error: --url is not a usable SQLAlchemy URL: "),
    ],
)
def test_bad_url_is_one_line_and_exit_2(
    url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--url", url]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert "s3cret" not in captured.err


def test_unwritable_report_path_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--json", str(blocker / "demo.json")]) == 2

    err = capsys.readouterr().err
    assert err.startswith("sqlwatch: error: ")
    assert err.count("\n") == 1


def test_python_m_sqlwatch_demo(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sqlwatch", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    check_output(result.stdout)
