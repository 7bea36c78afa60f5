"""The pytest plugin, through pytest itself (``pytester``): each test writes a tiny
SQLite application and a test suite for it, runs pytest on them and reads what
the user would read: outcomes, the terminal, the JSON report.

In-process runs (``runpytest``) are the default; the runs that must not share
this process are subprocesses: the import cost of an unused plugin, pytest-xdist,
and the runs that expect a warning to stay a warning (in-process, this suite's
own ``filterwarnings = error`` would apply to the inner run too).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sqlwatch.report import Report
from sqlwatch.schema import load_report_schema

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""

APP = '''
"""A tiny application: users with addresses, and the ways code reads them."""

from sqlalchemy import ForeignKey, String, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.orm import selectinload


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    addresses: Mapped[list["Address"]] = relationship(back_populates="user")


class Address(Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    user: Mapped[User] = relationship(back_populates="addresses")


def make_engine(path):
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for i in range(3):
            session.add(
                User(name=f"user{i}", addresses=[Address(email=f"u{i}a{j}@x") for j in range(2)])
            )
        session.commit()
    return engine


def count_users(engine, times):
    """The same statement ``times`` times: duplicates, not an N+1."""
    with engine.connect() as connection:
        for _ in range(times):
            connection.execute(text("SELECT count(*) FROM users")).scalar()


def list_emails(engine):
    """The classic N+1: one query for the users, one per user for the addresses."""
    emails = []
    with Session(engine) as session:
        for user in session.scalars(select(User)):
            for address in user.addresses:  # N+1 here
                emails.append(address.email)
    return emails


def list_emails_eager(engine):
    with Session(engine) as session:
        users = session.scalars(select(User).options(selectinload(User.addresses)))
        return [address.email for user in users for address in user.addresses]
'''

N_PLUS_ONE_LINE = next(  # pytester strips the leading blank line
    n for n, line in enumerate(APP.strip("\n").splitlines(), 1) if "# N+1 here" in line
)
N_PLUS_ONE_SITE = f"app.py:{N_PLUS_ONE_LINE} in list_emails"

CONFTEST = """
import pytest
import sqlwatch

import app


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    engine = app.make_engine(tmp_path_factory.mktemp("db") / "app.db")
    sqlwatch.instrument(engine, exporters=())
    yield engine
    engine.dispose()
"""


def write_app(pytester: pytest.Pytester, tests: str, *, ini: str = "") -> None:
    pytester.makeini(INI.format(extra=ini))
    pytester.makepyfile(app=APP, conftest=CONFTEST, test_app=textwrap.dedent(tests))


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def validate(data: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(load_report_schema()).validate(data)


def scope_counts(report: Report) -> dict[str, int]:
    return {scope.name: scope.query_count for scope in report.scopes}


# -- loading costs nothing -----------------------------------------------------------------

HEAVY = ("sqlalchemy", "sqlglot", "psutil", "opentelemetry", "sqlwatch.watch", "sqlwatch.scope")


def test_importing_the_plugin_imports_no_dependency(pytester: pytest.Pytester) -> None:
    code = (
        "import sys, sqlwatch.integrations.pytest_plugin; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}))"
    )
    result = pytester.run(sys.executable, "-c", code)
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == ["[]"]


def test_an_unused_plugin_loads_nothing_during_a_run(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(
        test_plain=f"""
        import sys

        def test_plugin_is_loaded_but_idle(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("sqlwatch")
            assert not pytestconfig.pluginmanager.has_plugin("sqlwatch-session")
            loaded = [m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m in {HEAVY!r}]
            assert loaded == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "= sqlwatch =" not in result.stdout.str()


def test_without_options_fixture_or_marker_the_plugin_reports_nothing(
    pytester: pytest.Pytester,
) -> None:
    write_app(pytester, "def test_queries(engine):\n    import app\n    app.list_emails(engine)\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "= sqlwatch =" not in result.stdout.str()
    assert list(pytester.path.glob("*.json")) == []


# -- the fixture -------------------------------------------------------------------------------


def test_fixture_is_a_watch_around_the_test_function(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import pytest
        import sqlwatch as sqlwatch_module
        import app

        @pytest.fixture
        def seeded(engine):
            app.count_users(engine, 5)  # fixture set-up: not the test's queries

        def test_counts_only_the_test(seeded, engine, sqlwatch):
            assert isinstance(sqlwatch, sqlwatch_module.Watch)
            assert sqlwatch.query_count == 0
            app.count_users(engine, 2)
            assert sqlwatch.query_count == 2
            assert [q.operation for q in sqlwatch.queries] == ["SELECT", "SELECT"]
            assert sqlwatch.report.name == "test_app.py::test_counts_only_the_test"
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_fixture_assert_max_queries_passes_and_fails_with_the_statements(
    pytester: pytest.Pytester,
) -> None:
    write_app(
        pytester,
        """
        import app

        def test_within(engine, sqlwatch):
            with sqlwatch.assert_max_queries(2):
                app.count_users(engine, 2)

        def test_over(engine, sqlwatch):
            with sqlwatch.assert_max_queries(1):
                app.count_users(engine, 3)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*QueryCountExceeded: expected at most 1 queries, 3 ran*",
            "*1. SELECT users at app.py:* in count_users*",
            "*SELECT count(*) FROM users*",
        ]
    )


def test_fixture_assert_no_n_plus_one(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import app

        def test_eager(engine, sqlwatch):
            with sqlwatch.assert_no_n_plus_one():
                app.list_emails_eager(engine)

        def test_lazy(engine, sqlwatch):
            with sqlwatch.assert_no_n_plus_one():
                app.list_emails(engine)

        def test_accepted(engine, sqlwatch):
            with sqlwatch.assert_no_n_plus_one(), sqlwatch.ignore_n_plus_one(reason="legacy"):
                app.list_emails(engine)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*NPlusOneDetected: 1 N+1 query pattern detected*",
            "*lazy load of User.addresses*",
            f"*at {N_PLUS_ONE_SITE}*",
            "*fix: *selectinload(User.addresses)*",
        ]
    )


def test_a_helper_called_without_with_fails_the_test(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import app

        def test_forgot_with(engine, sqlwatch):
            sqlwatch.assert_max_queries(1)
            app.count_users(engine, 3)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*sqlwatch.assert_max_queries(1) was called but not used in a `with` block*"]
    )


def test_fixture_type_is_importable_for_annotations(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        from sqlwatch.integrations.pytest_plugin import SQLWatchFixture

        def test_annotated(sqlwatch: SQLWatchFixture):
            assert isinstance(sqlwatch, SQLWatchFixture)
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


# -- the marker ---------------------------------------------------------------------------------


def test_marker_max_queries(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import pytest
        import app

        @pytest.mark.sqlwatch(max_queries=3)
        def test_within(engine):
            app.count_users(engine, 3)

        @pytest.mark.sqlwatch(max_queries=3)
        def test_over(engine):
            app.count_users(engine, 4)

        @pytest.mark.sqlwatch(max_queries=1)
        def test_savepoints_are_not_counted(engine, sqlwatch):
            from sqlalchemy import text

            with engine.connect() as connection, connection.begin():
                with connection.begin_nested():
                    connection.execute(text("SELECT 1"))
            assert "SAVEPOINT" in [q.operation for q in sqlwatch.queries]
            assert sqlwatch.query_count > 1

        @pytest.mark.sqlwatch(max_queries=2, max_statements=1)
        def test_statements_past_max_statements_count(engine):
            app.count_users(engine, 5)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*QueryCountExceeded: expected at most 3 queries in test_app.py::test_over"
            " (@pytest.mark.sqlwatch), 4 ran (transaction control not counted)*",
            "*at app.py:* in count_users*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*expected at most 2 queries in *past_max_statements_count*, 5 ran*",
            "*1. SELECT users at app.py:*",
            "*... and 4 more not kept (max_statements)*",
        ]
    )
    assert "_pytest_runtime.py" not in result.stdout.str()


def test_marker_n_plus_one_policies(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import pytest
        import app

        @pytest.mark.sqlwatch(n_plus_one="fail")
        def test_fail(engine):
            app.list_emails(engine)

        @pytest.mark.sqlwatch(n_plus_one="warn")
        def test_warn(engine):
            app.list_emails(engine)

        @pytest.mark.sqlwatch(n_plus_one="ignore")
        def test_ignore(engine):
            app.list_emails(engine)

        @pytest.mark.sqlwatch(n_plus_one="fail")
        def test_eager(engine):
            app.list_emails_eager(engine)
        """,
    )
    result = pytester.runpytest_subprocess("--sqlwatch-n-plus-one=fail")
    result.assert_outcomes(passed=3, failed=1, warnings=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*test_fail*",
            "*NPlusOneDetected: 1 N+1 query pattern in test_app.py::test_fail:*",
            "*lazy load of User.addresses, one query per User (3 queries*",
            f"*at {N_PLUS_ONE_SITE}*",
            "*fix: Add .options(selectinload(User.addresses))*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*warnings summary*",
            "test_app.py::test_warn",
            f"  app.py:{N_PLUS_ONE_LINE}: NPlusOneWarning: N+1 in test_app.py::test_warn:",
        ]
    )
    tests, n_plus_ones = out.split("= sqlwatch =", 1)[1].split("N+1 queries:", 1)
    assert "test_app.py::test_ignore" in tests  # listed among the tests...
    assert "test_app.py::test_ignore" not in n_plus_ones  # ...but not among the N+1s
    assert "test_app.py::test_warn" in n_plus_ones


def test_warn_under_filterwarnings_error_fails_the_test(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        "import app\n\ndef test_lazy(engine):\n    app.list_emails(engine)\n",
        ini="filterwarnings = error",
    )
    result = pytester.runpytest("--sqlwatch-n-plus-one=warn")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NPlusOneWarning: N+1 in test_app.py::test_lazy:*"])
    # ...and the documented way out: a filter for sqlwatch's warning category
    write_app(
        pytester,
        "import app\n\ndef test_lazy(engine):\n    app.list_emails(engine)\n",
        ini="filterwarnings =\n    error\n    default::sqlwatch.errors.NPlusOneWarning",
    )
    result = pytester.runpytest_subprocess("--sqlwatch-n-plus-one=warn")
    result.assert_outcomes(passed=1, warnings=1)


def test_markers_merge_and_the_closest_wins(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import pytest
        import app

        pytestmark = pytest.mark.sqlwatch(n_plus_one="fail", max_queries=1)

        @pytest.mark.sqlwatch(max_queries=10)
        def test_function_marker_wins_for_max_queries(engine):
            app.count_users(engine, 5)

        @pytest.mark.sqlwatch(n_plus_one_threshold=5)
        def test_watch_options_from_the_marker(engine):
            app.list_emails(engine)  # 3 lazy loads < threshold 5: no N+1
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*expected at most 1 queries in *test_watch_options*, 4 ran*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            'n_plus_one="fial"',
            "n_plus_one=...) must be one of 'fail', 'warn', 'ignore', got 'fial'",
        ),
        ("max_queries=-1", "max_queries=...) must be an integer >= 0, got -1"),
        ('max_queries="3"', "max_queries=...) must be an integer >= 0, got '3'"),
        ("slow_query=5", "unknown sqlwatch option 'slow_query'"),
        ("slow_query_ms=-5", "option 'slow_query_ms' must be a number >= 0"),
        ("3", "takes keywords only"),
    ],
)
def test_bad_marker_values_are_usage_errors(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    write_app(
        pytester,
        f"""
        import pytest

        @pytest.mark.sqlwatch({marker})
        def test_x():
            pass
        """,
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: test_app.py::test_x: @pytest.mark.sqlwatch*{message}*"])


# -- options and ini -----------------------------------------------------------------------------


def test_n_plus_one_option_fails_every_test_with_an_n_plus_one(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import app

        def test_lazy(engine):
            app.list_emails(engine)

        def test_eager(engine):
            app.list_emails_eager(engine)
        """,
    )
    pytester.runpytest("--sqlwatch-n-plus-one=fail").assert_outcomes(passed=1, failed=1)
    result = pytester.runpytest_subprocess("--sqlwatch-n-plus-one=warn")
    result.assert_outcomes(passed=2, warnings=1)
    result = pytester.runpytest("--sqlwatch", "--sqlwatch-n-plus-one=off")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*N+1 queries:*", "  test_app.py::test_lazy"])


def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    write_app(pytester, "def test_x():\n    pass\n")
    result = pytester.runpytest("--sqlwatch-n-plus-one=loud")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--sqlwatch-n-plus-one: invalid choice: 'loud'*"])

    write_app(pytester, "def test_x():\n    pass\n", ini="sqlwatch_n_plus_one = loud")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sqlwatch_n_plus_one = 'loud'*expected one of fail, warn, off*"])


def test_settings_from_pyproject_toml(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        asyncio_default_fixture_loop_scope = "function"
        sqlwatch = true
        sqlwatch_report = "reports/sqlwatch.json"
        sqlwatch_n_plus_one = "fail"
        """
    )
    pytester.makepyfile(
        app=APP,
        conftest=CONFTEST,
        test_app="import app\n\ndef test_lazy(engine):\n    app.list_emails(engine)\n",
    )
    monkeypatch.chdir(pytester.mkdir("elsewhere"))  # the ini path is relative to the rootdir
    result = pytester.runpytest(str(pytester.path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NPlusOneDetected*"])
    report = Report.load(pytester.path / "reports" / "sqlwatch.json")
    assert scope_counts(report) == {"test_app.py::test_lazy": 4}


def test_ini_true_is_overridden_on_the_command_line(pytester: pytest.Pytester) -> None:
    write_app(pytester, "import app\n\ndef test_x(engine):\n    app.count_users(engine, 1)\n")
    pytester.makeini(INI.format(extra="sqlwatch = true"))
    assert "= sqlwatch =" in pytester.runpytest().stdout.str()
    assert "= sqlwatch =" not in pytester.runpytest("-o", "sqlwatch=false").stdout.str()


# -- terminal summary and report ---------------------------------------------------------------

SUITE = """
import pytest
import app

def test_lazy(engine):
    app.list_emails(engine)

def test_eager(engine):
    app.list_emails_eager(engine)

@pytest.mark.parametrize("times", [1, 5])
def test_counts(engine, times):
    app.count_users(engine, times)

def test_no_sql():
    pass

def test_fails_after_queries(engine):
    app.count_users(engine, 2)
    raise KeyError("the test's own failure")
"""

EXPECTED = {
    "test_app.py::test_lazy": 4,
    "test_app.py::test_eager": 2,
    "test_app.py::test_counts[1]": 1,
    "test_app.py::test_counts[5]": 5,
    "test_app.py::test_no_sql": 0,
    "test_app.py::test_fails_after_queries": 2,
}


def test_terminal_summary(pytester: pytest.Pytester) -> None:
    write_app(pytester, SUITE)
    result = pytester.runpytest("--sqlwatch")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(['*KeyError: "the test\'s own failure"*'])
    result.stdout.fnmatch_lines(
        [
            "*= sqlwatch =*",
            "6 tests watched: 14 queries, * ms in the database, 1 N+1 finding",
            "tests with the most queries:",
            "  queries  query ms  N+1  test",
            "        5  * 0  test_app.py::test_counts[[]5[]]",
            "        4  * 1  test_app.py::test_lazy",
            "        2  * 0  test_app.py::test_eager",
            "        2  * 0  test_app.py::test_fails_after_queries",
            "        1  * 0  test_app.py::test_counts[[]1[]]",
            "N+1 queries:",
            "  test_app.py::test_lazy",
            "    1. lazy load of User.addresses, one query per User (3 queries, * ms)",
            f"       at {N_PLUS_ONE_SITE}",
            "*",
            "*fix: Add .options(selectinload(User.addresses))*",
        ]
    )


def test_report_has_one_scope_per_test(pytester: pytest.Pytester) -> None:
    write_app(pytester, SUITE)
    result = pytester.runpytest("--sqlwatch-report=out/report.json")
    result.assert_outcomes(passed=5, failed=1)
    path = pytester.path / "out" / "report.json"
    result.stdout.fnmatch_lines([f"report: {path}"])
    data = load_json(path)
    validate(data)
    report = Report.from_dict(data)
    assert report.name == "pytest"
    assert scope_counts(report) == EXPECTED
    assert report.query_count == sum(EXPECTED.values())
    assert report.statements == ()
    assert report.dropped_statements == sum(EXPECTED.values())
    (lazy,) = [s for s in report.scopes if s.name == "test_app.py::test_lazy"]
    assert lazy.runs == 1
    assert lazy.queries_per_run == {"p50": 4.0, "p95": 4.0, "max": 4.0}
    (finding,) = lazy.n_plus_one
    assert finding.relationship == "User.addresses"
    assert finding.call_site == N_PLUS_ONE_SITE
    assert [f.relationship for f in report.n_plus_one] == ["User.addresses"]


def test_an_ignored_n_plus_one_stays_out_of_the_named_scopes_of_the_test(
    pytester: pytest.Pytester,
) -> None:
    """A named watch inside the test is a scope of the JSON report too (as are the
    middleware's endpoints): ``n_plus_one="ignore"`` keeps the N+1 out of it, so that
    ``sqlwatch diff`` does not see it either."""
    write_app(
        pytester,
        """
        import pytest
        import sqlwatch
        import app

        @pytest.mark.sqlwatch(n_plus_one="ignore")
        def test_ignore(engine):
            with sqlwatch.watch("export"):
                app.list_emails(engine)

        def test_reported(engine):
            with sqlwatch.watch("listing"):
                app.list_emails(engine)
        """,
    )
    result = pytester.runpytest("--sqlwatch-report=report.json")
    result.assert_outcomes(passed=2)
    report = Report.load(pytester.path / "report.json")
    findings = {scope.name: len(scope.n_plus_one) for scope in report.scopes}
    assert findings == {
        "test_app.py::test_ignore": 0,
        "export": 0,
        "test_app.py::test_reported": 1,
        "listing": 1,
    }


def test_report_of_the_plugin_reads_right_on_the_command_line(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlwatch._cli import main

    write_app(pytester, SUITE)
    pytester.runpytest("--sqlwatch-report=report.json")
    capsys.readouterr()
    assert main(["report", str(pytester.path / "report.json")]) == 0
    out = capsys.readouterr().out
    assert "max_statements" not in out  # the plugin keeps no statement on purpose
    total = sum(EXPECTED.values())
    assert out.splitlines()[1] == (
        f"(statements are not kept one by one in this report: all {total} are aggregated)"
    )


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("--sqlwatch-report=out", "{root}/out is a directory"),
        ("--sqlwatch-report=test_app.py/report.json", "{root}/test_app.py is not a directory"),
        ("--sqlwatch-report=test_app.py/a/b/report.json", "{root}/test_app.py is not a directory"),
    ],
)
def test_an_unusable_report_path_is_a_usage_error_before_any_test(
    pytester: pytest.Pytester, option: str, problem: str
) -> None:
    write_app(pytester, "def test_x():\n    raise AssertionError('ran')\n")
    pytester.mkdir("out")
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = f"ERROR: {option}: cannot write the report there: " + problem.format(
        root=pytester.path
    )
    assert [line for line in result.stderr.lines if line.strip()] == [message]
    assert "ran" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_an_unusable_report_path_in_the_ini_file_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    write_app(pytester, "def test_x():\n    pass\n", ini="sqlwatch_report = test_app.py/r.json")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: sqlwatch_report = 'test_app.py/r.json' in the pytest configuration: "
            "cannot write the report there: */test_app.py is not a directory"
        ]
    )


def test_a_missing_report_folder_is_created(pytester: pytest.Pytester) -> None:
    write_app(pytester, "def test_x():\n    pass\n")
    result = pytester.runpytest("--sqlwatch-report=new/folder/report.json")
    assert result.ret == pytest.ExitCode.OK
    assert Report.load(pytester.path / "new" / "folder" / "report.json").name == "pytest"


def test_a_report_that_cannot_be_written_at_the_end_is_one_line(
    pytester: pytest.Pytester,
) -> None:
    # usable when pytest starts; a test then puts a folder where the report goes
    write_app(
        pytester,
        """
        import os

        def test_x():
            os.mkdir("report.json")
        """,
    )
    result = pytester.runpytest("--sqlwatch-report=report.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # not a green run without its report
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output
    path = pytester.path / "report.json"
    (line,) = [line for line in result.stdout.lines if "could not be written" in line]
    assert line.startswith(f"error: the report could not be written to {path}: ")


def test_no_engine_instrumented_gives_a_hint(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("--sqlwatch")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sqlwatch saw no SQL statement: is your engine instrumented?*"])


def test_async_tests_are_watched(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra="asyncio_mode = auto"))
    pytester.makepyfile(
        test_async="""
        import pytest
        import sqlwatch
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        @pytest.fixture
        async def aengine(tmp_path):
            engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
            sqlwatch.instrument(engine, exporters=())
            yield engine
            await engine.dispose()

        @pytest.mark.sqlwatch(max_queries=2)
        async def test_async_over(aengine):
            async with aengine.connect() as connection:
                for _ in range(3):
                    await connection.execute(text("SELECT 1"))

        async def test_async_fixture(aengine, sqlwatch):
            async with aengine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            assert sqlwatch.query_count == 1
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*expected at most 2 queries in *test_async_over*, 3 ran*"])


def test_report_is_merged_across_xdist_workers(pytester: pytest.Pytester) -> None:
    tests = SUITE + textwrap.dedent(
        """
        import os

        @pytest.fixture(autouse=True)
        def _which_worker():
            with open("workers.txt", "a") as handle:
                handle.write(os.environ.get("PYTEST_XDIST_WORKER", "none") + "\\n")
        """
    )
    write_app(pytester, tests)
    serial = pytester.runpytest_subprocess("--sqlwatch-report=serial.json")
    serial.assert_outcomes(passed=5, failed=1)
    (pytester.path / "workers.txt").unlink()

    result = pytester.runpytest_subprocess("-n", "2", "--sqlwatch-report=xdist.json")
    result.assert_outcomes(passed=5, failed=1)
    workers = set((pytester.path / "workers.txt").read_text().split())
    assert workers == {"gw0", "gw1"}
    result.stdout.fnmatch_lines(["*= sqlwatch =*", "6 tests watched: 14 queries, *"])

    data = load_json(pytester.path / "xdist.json")
    validate(data)
    merged = Report.from_dict(data)
    alone = Report.load(pytester.path / "serial.json")
    assert scope_counts(merged) == scope_counts(alone) == EXPECTED
    assert merged.query_count == alone.query_count == sum(EXPECTED.values())
    assert {f.relationship for f in merged.n_plus_one} == {"User.addresses"}
    assert sum(f.count for f in merged.n_plus_one) == sum(f.count for f in alone.n_plus_one)
    assert {s.fingerprint: s.count for s in merged.fingerprints} == {
        s.fingerprint: s.count for s in alone.fingerprints
    }


def test_markers_only_under_xdist_still_reach_the_controller(pytester: pytest.Pytester) -> None:
    write_app(
        pytester,
        """
        import pytest
        import app

        @pytest.mark.sqlwatch
        def test_a(engine):
            app.list_emails(engine)

        @pytest.mark.sqlwatch
        def test_b(engine):
            app.count_users(engine, 3)

        def test_unwatched(engine):
            app.count_users(engine, 9)
        """,
    )
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["2 tests watched: 7 queries, *", "N+1 queries:"])
