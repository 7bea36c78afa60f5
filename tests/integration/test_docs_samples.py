"""The documentation against the library: samples run, and what the pages show is
what users get.

Each test reads the claim from the page itself (README.md, docs/*.md), so a page
that drifts from the code fails here rather than in a user's hands.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.config import Options
from tests.models import Address, Base, User

ROOT = Path(__file__).resolve().parents[2]


def page(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def prose(name: str) -> str:
    """The page with its line breaks as spaces: a claim survives re-wrapping."""
    return " ".join(page(name).split())


def code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.M | re.S)


def seed_users(engine: Engine, count: int = 3) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for i in range(count):
            session.add(User(name=f"user{i}", addresses=[Address(email=f"user{i}@example.com")]))
        session.commit()


def render_users_page(engine: Engine) -> list[tuple[str, list[str]]]:
    """The docs' stand-in page: an N+1 over ``User.addresses``."""
    with Session(engine) as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        return [(user.name, [a.email for a in user.addresses]) for user in users]


# -- README ---------------------------------------------------------------------------


def test_readme_quick_start_runs_and_finds_the_n_plus_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = code_blocks(page("README.md"), "python")[0]
    assert 'create_engine("sqlite:///app.db")' in sample
    sample = sample.replace("sqlite:///app.db", f"sqlite:///{tmp_path / 'app.db'}")
    namespace: dict[str, object] = {}

    def render() -> None:
        render_users_page(namespace["engine"])  # type: ignore[arg-type]

    namespace["render_users_page"] = render
    seed_users(create_engine(f"sqlite:///{tmp_path / 'app.db'}"))
    exec(compile(sample, "README.md", "exec"), namespace)

    lines = capsys.readouterr().out.splitlines()
    count, _total_ms = lines[0].split()
    assert int(count) == 4  # the users, then one lazy load per user
    assert "User.addresses" in lines[1]
    assert "selectinload(User.addresses)" in lines[1]


# -- getting started, analysis ----------------------------------------------------------


@pytest.mark.parametrize("name", ["docs/getting-started.md", "docs/analysis.md"])
def test_analyze_sample_shows_what_analyze_returns(name: str) -> None:
    markdown = page(name)
    call = re.search(r'sqlwatch\.analyze\(\s*(?:\.\.\.\s*)?"([^"]+)"', markdown)
    shown = re.search(r"normalized='([^']+)'", markdown)
    assert call is not None
    assert shown is not None
    info = sqlwatch.analyze(call.group(1))
    assert info.normalized == shown.group(1)
    assert f"summary='{info.summary}'" in markdown


def test_options_table_defaults_are_the_real_defaults() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)`", page("docs/getting-started.md"), flags=re.M)
    documented = dict(rows)
    defaults = Options()
    for option in ("slow_query_ms", "n_plus_one_threshold", "capture_params"):
        assert documented[option] == repr(getattr(defaults, option))
    assert documented["max_statements"] == "10_000"
    assert defaults.max_statements == 10_000
    assert "(at least `2`)" in prose("docs/getting-started.md")
    with pytest.raises(ValueError, match="n_plus_one_threshold"):
        sqlwatch.watch(n_plus_one_threshold=1)


def test_a_second_instrument_call_keeps_the_first_calls_options() -> None:
    assert "the options of that later call are still checked, but not applied" in prose(
        "docs/getting-started.md"
    )
    engine = create_engine("sqlite://")
    first = sqlwatch.instrument(engine, exporters=(), slow_query_ms=100)
    again = sqlwatch.instrument(engine, exporters=(), slow_query_ms=5)
    assert again is first
    assert again.options.slow_query_ms == 100


def test_process_wide_max_statements_is_the_first_instrument_calls() -> None:
    assert (
        "except `max_statements` and `detect_unused_eager_loads`, which are those of the first"
        in prose("docs/getting-started.md")
    )
    first, second = create_engine("sqlite://"), create_engine("sqlite://")
    sqlwatch.instrument(first, exporters=())
    sqlwatch.instrument(second, exporters=(), max_statements=2)
    with second.connect() as connection:
        for i in range(5):
            connection.execute(text(f"SELECT {i}"))
    report = sqlwatch.report()
    assert len(report.statements) == 5
    assert report.dropped_statements == 0


def test_unterminated_comment_leaves_the_mark_the_analysis_page_shows() -> None:
    shown = re.search(r"`(select a from t /\* x)` is\n`([^`]+)`", page("docs/analysis.md"))
    assert shown is not None
    assert sqlwatch.analyze(shown.group(1)).normalized == shown.group(2)


# -- exporters, assertions ----------------------------------------------------------------


def test_n_plus_one_log_line_is_the_one_the_exporters_page_shows(
    sqlite_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    shown = re.search(r"^WARNING  (N\+1 .*)$", page("docs/exporters.md"), flags=re.M)
    assert shown is not None
    seed_users(sqlite_engine)
    sqlwatch.instrument(sqlite_engine)
    with caplog.at_level(logging.WARNING, logger="sqlwatch"):
        render_users_page(sqlite_engine)
        sqlwatch.report()
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("N+1 ")]
    assert len(logged) == 1

    def without_call_site(message: str) -> str:
        return re.sub(r" \([^()]*:\d+ in [^()]*\)", " (SITE)", message)

    expected = without_call_site(shown.group(1)).removesuffix(" ...")
    assert without_call_site(logged[0]).startswith(expected)


def test_assert_max_queries_past_max_statements_ends_as_the_page_says(
    sqlite_engine: Engine,
) -> None:
    shown = re.search(
        r"ends with\n  `(\.\.\. and N more not kept[^`]*)`", page("docs/assertions.md")
    )
    assert shown is not None
    sqlwatch.instrument(sqlite_engine, exporters=())

    def run_past_max_statements() -> None:
        with sqlwatch.assert_max_queries(0), sqlite_engine.connect() as connection:
            for _ in range(10_003):
                connection.exec_driver_sql("SELECT 1")

    with pytest.raises(sqlwatch.QueryCountExceeded) as failure:
        run_past_max_statements()
    last_line = str(failure.value).splitlines()[-1].strip()
    assert last_line == shown.group(1).replace("N", "3")


# -- command line, pytest plugin ------------------------------------------------------


def test_diff_output_starts_as_the_ci_recipe_shows(tmp_path: Path, sqlite_engine: Engine) -> None:
    shown = re.search(
        r"^```text\n(sqlwatch diff .*)\n(\d+ scopes?: )", page("docs/ci-recipe.md"), re.M
    )
    assert shown is not None
    sqlwatch.instrument(sqlite_engine, exporters=())
    with sqlwatch.watch("tests/test_a.py::test_a") as watched, sqlite_engine.connect() as c:
        c.execute(text("SELECT 1"))
    watched.report.save(tmp_path / "baseline.json")
    watched.report.save(tmp_path / "sqlwatch.json")
    run = subprocess.run(
        [sys.executable, "-m", "sqlwatch", "diff", "baseline.json", "sqlwatch.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.splitlines()[0] == shown.group(1)


def test_helper_without_with_fails_with_the_message_the_pytest_page_shows(
    pytester: pytest.Pytester,
) -> None:
    shown = re.search(
        r"^(sqlwatch\.assert_max_queries\(3\) was called but not used .*)$",
        page("docs/pytest.md"),
        flags=re.M,
    )
    assert shown is not None
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_forgot_with=textwrap.dedent(
            """
            def test_forgot(sqlwatch):
                sqlwatch.assert_max_queries(3)
            """
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert shown.group(1) in result.stdout.lines  # the whole line, not a prefix of it
