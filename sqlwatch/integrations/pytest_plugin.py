"""The pytest plugin: the ``sqlwatch`` fixture, ``@pytest.mark.sqlwatch`` and ``--sqlwatch*``.

pytest loads this module (through the ``pytest11`` entry point) in every run of
every project that installs sqlwatch, used or not. So it imports nothing but
pytest and the standard library, and registers no per-test hook: the work, and
sqlwatch itself with SQLAlchemy and sqlglot, load only when an option turns the
plugin on, or a collected test uses the fixture or the marker
(``sqlwatch.integrations._pytest_runtime``).

Options (each also an ini setting, e.g. in ``[tool.pytest.ini_options]``):

- ``--sqlwatch`` / ``sqlwatch = true``: a watch around every test;
- ``--sqlwatch-report=PATH`` / ``sqlwatch_report``: one JSON report, one scope per
  test (its node id), merged across pytest-xdist workers;
- ``--sqlwatch-n-plus-one=fail|warn|off`` / ``sqlwatch_n_plus_one``: what an N+1
  in a test does (default ``off``: listed in the summary and the report only).

Either of the last two also watches every test.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlwatch.integrations._pytest_runtime import SQLWatchFixture, SQLWatchSession

__all__ = ["SQLWatchFixture", "sqlwatch"]

N_PLUS_ONE_POLICIES = ("fail", "warn", "off")
MARKER_POLICIES = ("fail", "warn", "ignore")


class Settings:
    """The plugin's options, resolved once at configure time."""

    __slots__ = ("every_test", "n_plus_one", "report_path")

    def __init__(self, every_test: bool, report_path: str | None, n_plus_one: str) -> None:
        self.every_test = every_test
        self.report_path = report_path
        self.n_plus_one = n_plus_one


class MarkerSettings:
    """``@pytest.mark.sqlwatch(...)`` of one test, the closest marker's keywords first."""

    __slots__ = ("max_queries", "n_plus_one", "options")

    def __init__(self, max_queries: int | None, n_plus_one: str | None, options: dict[str, Any]):
        self.max_queries = max_queries
        self.n_plus_one = n_plus_one
        self.options = options


SETTINGS = pytest.StashKey[Settings]()
SESSION = pytest.StashKey["SQLWatchSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqlwatch", "sqlwatch: the SQL statements of each test")
    group.addoption(
        "--sqlwatch",
        action="store_true",
        default=None,
        help="watch the SQL statements of every test (ini: sqlwatch = true)",
    )
    group.addoption(
        "--sqlwatch-report",
        metavar="PATH",
        default=None,
        help="write one JSON report with one scope per test, for `sqlwatch diff` "
        "(ini: sqlwatch_report, relative to the rootdir)",
    )
    group.addoption(
        "--sqlwatch-n-plus-one",
        choices=N_PLUS_ONE_POLICIES,
        default=None,
        help="fail or warn on an N+1 in a test, or only report it (off, the default) "
        "(ini: sqlwatch_n_plus_one)",
    )
    parser.addini("sqlwatch", type="bool", default=False, help="watch every test (sqlwatch)")
    parser.addini("sqlwatch_report", type="string", default="", help="sqlwatch's JSON report path")
    parser.addini(
        "sqlwatch_n_plus_one", type="string", default="", help="fail, warn or off (sqlwatch)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlwatch(max_queries=None, n_plus_one=None, **options): watch the test's SQL; "
        "fail it over max_queries statements; n_plus_one='fail'|'warn'|'ignore'; "
        "other keywords are sqlwatch.watch() options",
    )
    settings = _settings(config)
    config.stash[SETTINGS] = settings
    if settings.every_test:
        activate(config)


def _settings(config: pytest.Config) -> Settings:
    n_plus_one = (
        config.getoption("sqlwatch_n_plus_one")
        or str(config.getini("sqlwatch_n_plus_one") or "").strip()
    )
    if n_plus_one and n_plus_one not in N_PLUS_ONE_POLICIES:
        raise pytest.UsageError(
            f"sqlwatch_n_plus_one = {n_plus_one!r} in the pytest configuration: "
            f"expected one of {', '.join(N_PLUS_ONE_POLICIES)}"
        )
    report_path: str | None = config.getoption("sqlwatch_report")
    if report_path:
        origin = f"--sqlwatch-report={report_path}"
        report_path = os.path.abspath(report_path)
    else:
        ini_path = str(config.getini("sqlwatch_report") or "").strip()
        origin = f"sqlwatch_report = {ini_path!r} in the pytest configuration"
        report_path = str(config.rootpath / ini_path) if ini_path else None
    problem = _unwritable(report_path) if report_path else None
    if problem:
        raise pytest.UsageError(f"{origin}: cannot write the report there: {problem}")
    every_test = bool(
        config.getoption("sqlwatch")
        or config.getini("sqlwatch")
        or report_path
        or n_plus_one in ("fail", "warn")
    )
    return Settings(every_test, report_path, n_plus_one or "off")


def _unwritable(path: str) -> str | None:
    """Why the report obviously cannot be written to ``path`` (absolute), found now
    rather than after the whole run. Missing folders are fine: they are created."""
    if os.path.isdir(path):
        return f"{path} is a directory"
    folder = os.path.dirname(path)
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        return f"{folder} is not a directory"
    return None


def activate(config: pytest.Config) -> SQLWatchSession:
    """Load sqlwatch and register the per-test hooks (once per session)."""
    session = config.stash.get(SESSION, None)
    if session is None:
        from sqlwatch.integrations._pytest_runtime import SQLWatchSession

        session = SQLWatchSession(config, config.stash[SETTINGS])
        config.stash[SESSION] = session
        config.pluginmanager.register(session, "sqlwatch-session")
    return session


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate the markers now (a typo is a usage error, not 500 failed tests), and
    turn the plugin on if a test uses the fixture or the marker."""
    used = False
    for item in items:
        if item.get_closest_marker("sqlwatch") is not None:
            marker_settings(item)
            used = True
        elif "sqlwatch" in getattr(item, "fixturenames", ()):
            used = True
    if used:
        activate(config)


def marker_settings(item: pytest.Item) -> MarkerSettings | None:
    """The merged ``sqlwatch`` markers of a test (the closest wins), validated."""
    markers = list(item.iter_markers("sqlwatch"))
    if not markers:
        return None
    keywords: dict[str, Any] = {}
    for marker in markers:
        if marker.args:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.sqlwatch takes keywords only "
                f"(max_queries=, n_plus_one=, watch options), got {marker.args!r}"
            )
        for key, value in marker.kwargs.items():
            keywords.setdefault(key, value)
    max_queries = keywords.pop("max_queries", None)
    if max_queries is not None and (
        isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 0
    ):
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.sqlwatch(max_queries=...) must be an integer >= 0, "
            f"got {max_queries!r}"
        )
    n_plus_one = keywords.pop("n_plus_one", None)
    if n_plus_one is not None and n_plus_one not in MARKER_POLICIES:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.sqlwatch(n_plus_one=...) must be one of "
            f"{', '.join(repr(p) for p in MARKER_POLICIES)}, got {n_plus_one!r}"
        )
    if keywords:
        from sqlwatch.config import Options

        try:
            Options.from_kwargs(keywords)
        except (TypeError, ValueError) as exc:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.sqlwatch: {exc}") from None
    return MarkerSettings(max_queries, n_plus_one, keywords)


@pytest.fixture
def sqlwatch(request: pytest.FixtureRequest) -> SQLWatchFixture:
    """The test's watch (open while the test function runs), with assertion helpers:
    ``with sqlwatch.assert_max_queries(3): ...``, ``sqlwatch.assert_no_n_plus_one()``,
    ``sqlwatch.query_count``, ``sqlwatch.n_plus_one``, ``sqlwatch.report``."""
    return activate(request.config).fixture_for(request.node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, on the controller: a worker is done; take its report."""
    output = getattr(node, "workeroutput", None) or {}
    data = output.get("sqlwatch")
    if data is not None:
        activate(node.config).add_worker_output(data)
    elif error is not None and SESSION in node.config.stash:
        node.config.stash[SESSION].lost_workers += 1


if not TYPE_CHECKING:  # hidden from type checkers, which see the import above

    def __getattr__(name: str) -> Any:
        if name == "SQLWatchFixture":  # for annotations: def test_x(sqlwatch: SQLWatchFixture)
            from sqlwatch.integrations._pytest_runtime import SQLWatchFixture

            return SQLWatchFixture
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
