"""``sqlwatch report --format markdown`` is pasted into pull requests: what it shows
must be the SQL and the call sites as they are, not Markdown markup made of them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

import sqlwatch
from sqlwatch._render import markdown_code, markdown_text, render_markdown

PACKAGE = """
from sqlalchemy import text


def run(connection):
    connection.execute(text("SELECT t.*, u.* FROM t JOIN u ON t.a = u.a"))
    connection.execute(text("SELECT count(*) FROM t UNION ALL SELECT count(*) FROM u"))
    connection.execute(text("SELECT a | 2 AS sleep_ms FROM t"))
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'md.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (a INTEGER)"))
        connection.execute(text("CREATE TABLE u (a INTEGER)"))
    sqlwatch.instrument(engine, exporters=())
    yield engine
    engine.dispose()


@pytest.fixture
def queries_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """Statements run from a package's ``__init__.py``: call sites full of underscores."""
    (tmp_path / "queries_pkg").mkdir()
    (tmp_path / "queries_pkg" / "__init__.py").write_text(PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "queries_pkg", raising=False)
    return importlib.import_module("queries_pkg")


def table_rows(markdown: str, title: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index(f"#### {title}") + 4
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_sql_and_call_sites_are_not_read_as_markup(engine: Engine, queries_pkg: object) -> None:
    with sqlwatch.watch("w") as watch, engine.connect() as connection:
        for _ in range(2):
            queries_pkg.run(connection)  # type: ignore[attr-defined]
    markdown = render_markdown(watch.report.redacted())

    statements = [
        row.rsplit(" | ", 1)[1] for row in table_rows(markdown, "Top statements by total time")
    ]
    assert sorted(statements) == sorted(
        [
            r"SELECT t.\*, u.\* FROM t JOIN u ON t.a = u.a |",  # else: t.<em>, u.</em>
            r"SELECT count(\*) FROM t UNION ALL SELECT count(\*) FROM u |",
            r"SELECT a \| ? AS sleep_ms FROM t |",  # a word's underscore is no markup
        ]
    )
    sites = [
        row.split(" | ")[1]
        for row in table_rows(markdown, "Duplicate queries (same SQL, same parameters)")
    ]
    assert len(sites) == 3
    for site in sites:  # else: queries_pkg/<strong>init</strong>.py
        assert r"/\_\_init\_\_.py:" in site
        assert "/__init__" not in site


def test_markdown_text_escapes_only_markup() -> None:
    assert markdown_text("sleep_ms(?)") == "sleep_ms(?)"
    assert markdown_text("app/__init__.py:3 in __init__") == (
        r"app/\_\_init\_\_.py:3 in \_\_init\_\_"
    )
    assert markdown_text("`users`.id <b> &lt; ~x~") == r"\`users\`.id \<b> \&lt; \~x\~"
    assert markdown_text("a\\b") == "a\\\\b"
    assert markdown_text("one\ntwo") == "one two"  # a line break would end the table


def test_markdown_code_holds_backticks_and_pipes() -> None:
    assert markdown_code("test_a[x]") == "`test_a[x]`"
    assert markdown_code("`a` | b") == "`` `a` \\| b ``"
    assert markdown_code("a | b", in_table=False) == "`a | b`"


def test_markdown_says_why_statements_are_missing(engine: Engine) -> None:
    with sqlwatch.watch("w", max_statements=1) as watch, engine.connect() as connection:
        for _ in range(3):
            connection.execute(text("SELECT 1"))
    markdown = render_markdown(watch.report)
    assert "(2 statements beyond max_statements: aggregated only)" in markdown.splitlines()
