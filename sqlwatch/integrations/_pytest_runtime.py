"""The pytest plugin's work, loaded only when a session uses sqlwatch (see ``pytest_plugin``).

A test's watch is open while the test function runs (pytest's call phase), not
while its fixtures set up and tear down: fixtures seed databases, and a test's
query count should be the code under test's. Each watched test's final report
is folded into one session report (``Report.merge``, statements dropped, one
``ScopeSummary`` per test named by its node id); pytest-xdist workers send
theirs to the controller through ``workeroutput``, which merges them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Generator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import pytest

from sqlwatch._analysis import TRANSACTION_CONTROL
from sqlwatch._capture.call_sites import split_call_site
from sqlwatch._guard import report_internal_error
from sqlwatch.assertions import (
    assert_max_queries,
    assert_no_n_plus_one,
    format_findings,
    format_statements,
    ignore_n_plus_one,
)
from sqlwatch.errors import NPlusOneDetected, NPlusOneWarning, QueryCountExceeded
from sqlwatch.integrations.pytest_plugin import MarkerSettings, Settings, marker_settings
from sqlwatch.records import NPlusOne, ScopeSummary
from sqlwatch.report import Report, merge_scopes
from sqlwatch.watch import Watch

__all__ = ["SQLWatchFixture", "SQLWatchSession"]

T = TypeVar("T")

SESSION_NAME = "pytest"
MAX_SLOW_QUERIES = 100
MAX_LEAKS = 100
TOP_TESTS = 10

FIXTURE = pytest.StashKey["SQLWatchFixture"]()


class _Helper(Generic[T]):
    """An assertion helper of the fixture: a context manager that knows whether it
    was used, because ``sqlwatch.assert_max_queries(3)`` without ``with`` would
    otherwise assert nothing, silently."""

    def __init__(self, label: str, manager: AbstractContextManager[T]) -> None:
        self.label = label
        self.entered = False
        self._manager = manager

    def __enter__(self) -> T:
        self.entered = True
        return self._manager.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        __tracebackhide__ = True
        return self._manager.__exit__(exc_type, exc, tb)


class SQLWatchFixture(Watch):
    """The ``sqlwatch`` fixture: the test's ``Watch`` (open while the test function
    runs), with sqlwatch's assertion helpers as context managers for a block."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self._helpers: list[_Helper[Any]] = []

    def assert_max_queries(
        self, n: int, *, name: str | None = None, include_tcl: bool = False, engines: Any = None
    ) -> AbstractContextManager[Watch]:
        """``with sqlwatch.assert_max_queries(3):``: at most 3 statements in the block."""
        manager = assert_max_queries(n, name=name, include_tcl=include_tcl, engines=engines)
        return self._helper(f"assert_max_queries({n!r})", manager)

    def assert_no_n_plus_one(self, **options: Any) -> AbstractContextManager[Watch]:
        """``with sqlwatch.assert_no_n_plus_one():``: fail on an N+1 in the block."""
        return self._helper("assert_no_n_plus_one()", assert_no_n_plus_one(**options))

    def ignore_n_plus_one(
        self, *patterns: str, reason: str | None = None
    ) -> AbstractContextManager[None]:
        """``with sqlwatch.ignore_n_plus_one():``: the block's N+1s are accepted."""
        return self._helper("ignore_n_plus_one()", ignore_n_plus_one(*patterns, reason=reason))

    def _helper(self, label: str, manager: AbstractContextManager[T]) -> _Helper[T]:
        helper = _Helper(label, manager)
        self._helpers.append(helper)
        return helper

    def unused_helpers(self) -> list[str]:
        return [h.label for h in self._helpers if not h.entered]


class SQLWatchSession:
    """The session's plugin object: per-test watches, the session report, the summary."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.totals: Report | None = None
        """The session's report so far, without its scopes (kept apart: merging a
        tuple of one scope per test into every test's report would be quadratic)."""
        self.scopes: dict[str, ScopeSummary] = {}
        self.tests: dict[str, None] = {}
        """Node ids of the watched tests, in the order they finished (an ordered set)."""
        self.lost_workers = 0
        self.is_worker = hasattr(config, "workerinput")

    # -- the fixture ------------------------------------------------------------

    def fixture_for(self, item: pytest.Item) -> SQLWatchFixture:
        marker = marker_settings(item)
        fixture = SQLWatchFixture(item.nodeid, **(marker.options if marker else {}))
        item.stash[FIXTURE] = fixture
        return fixture

    # -- per test -----------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        __tracebackhide__ = True  # a failure of ours shows its message, not this plugin
        marker = marker_settings(item)
        watch: Watch | None = item.stash.get(FIXTURE, None)
        if watch is None and (marker is not None or self.settings.every_test):
            watch = Watch(item.nodeid, **(marker.options if marker else {}))
        if watch is None:
            return (yield)
        policy = self.settings.n_plus_one
        if marker is not None and marker.n_plus_one is not None:
            policy = marker.n_plus_one
        watch.__enter__()
        try:
            result = yield
        except BaseException:
            watch.__exit__(None, None, None)
            self._record(item, watch, policy, enforce=False)
            raise
        watch.__exit__(None, None, None)
        self._record(item, watch, policy, enforce=True, marker=marker)
        return result

    def _record(
        self,
        item: pytest.Item,
        watch: Watch,
        policy: str,
        *,
        enforce: bool,
        marker: MarkerSettings | None = None,
    ) -> None:
        __tracebackhide__ = True
        report = watch.report
        if policy == "ignore":
            # the named scopes the test ran (a named watch or assertion, the endpoints
            # of the middleware) go to the JSON report too: their N+1s are this test's
            report = replace(
                report,
                n_plus_one=(),
                scopes=tuple(replace(scope, n_plus_one=()) for scope in report.scopes),
            )
        try:
            self._add(item.nodeid, report)
        except Exception as exc:
            report_internal_error("pytest plugin: recording a test", exc)
        if not enforce:
            return
        if isinstance(watch, SQLWatchFixture):
            unused = watch.unused_helpers()
            if unused:
                pytest.fail(
                    f"sqlwatch.{unused[0]} was called but not used in a `with` block, so it "
                    "checked nothing: write `with sqlwatch.assert_max_queries(3): ...` for a "
                    "block, or @pytest.mark.sqlwatch(max_queries=3) for the whole test",
                    pytrace=False,
                )
        if marker is not None and marker.max_queries is not None:
            _check_max_queries(item.nodeid, report, marker.max_queries)
        if report.n_plus_one and policy in ("fail", "warn"):
            message = describe_n_plus_one(item.nodeid, report.n_plus_one)
            if policy == "fail":
                raise NPlusOneDetected(message)
            for finding in report.n_plus_one:
                _warn(item, finding)

    def _add(self, nodeid: str, report: Report) -> None:
        summary = ScopeSummary(
            name=nodeid,
            runs=1,
            query_count=report.query_count,
            total_query_ms=report.total_query_ms,
            duration_ms=report.duration_ms,
            queries_per_run={key: float(report.query_count) for key in ("p50", "p95", "max")},
            n_plus_one=report.n_plus_one,
        )
        slim = replace(
            report,
            statements=(),
            dropped_statements=report.dropped_statements + len(report.statements),
            scopes=(summary, *report.scopes),
        )
        self._merge(slim)
        self.tests[nodeid] = None

    def _merge(self, report: Report) -> None:
        for scope in report.scopes:
            seen = self.scopes.get(scope.name)
            self.scopes[scope.name] = scope if seen is None else merge_scopes((seen,), (scope,))[0]
        report = replace(report, name=SESSION_NAME, scopes=())
        merged = report if self.totals is None else self.totals.merge(report)
        slow = merged.slow_queries
        if len(slow) > MAX_SLOW_QUERIES:
            slow = tuple(sorted(slow, key=lambda s: -s.duration_ms)[:MAX_SLOW_QUERIES])
        self.totals = replace(merged, slow_queries=slow, leaks=merged.leaks[:MAX_LEAKS])

    # -- pytest-xdist ---------------------------------------------------------------

    def add_worker_output(self, data: dict[str, Any]) -> None:
        try:
            if data.get("report") is not None:
                self._merge(Report.from_dict(json.loads(data["report"])))
            self.tests.update(dict.fromkeys(data.get("tests", ())))
        except Exception as exc:
            report_internal_error("pytest plugin: merging a pytest-xdist worker's report", exc)

    # -- the end ------------------------------------------------------------------

    def final_report(self) -> Report:
        totals = self.totals if self.totals is not None else Report(name=SESSION_NAME)
        return replace(totals, scopes=tuple(self.scopes.values()))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            output: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
            report = self.final_report().to_json(indent=None) if self.tests else None
            output["sqlwatch"] = {"report": report, "tests": list(self.tests)}
            return
        path = self.settings.report_path
        if path and not self.config.option.collectonly:
            try:
                self.written = self.final_report().save(path)
            except OSError as exc:  # the folder went away, a full disk, no permission
                self.write_error = f"error: the report could not be written to {path}: {exc}"
                if session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.USAGE_ERROR

    written: Path | None = None
    write_error: str | None = None
    """Why ``--sqlwatch-report`` could not be written: one line of the summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not (
            self.tests or self.written or self.write_error or self.lost_workers
        ):
            return
        try:
            lines = summary_lines(self.final_report(), self.tests, written=self.written)
            if self.lost_workers:
                lines.append(
                    f"warning: {self.lost_workers} pytest-xdist worker(s) went down without "
                    "sending their results: the report is incomplete"
                )
            if self.write_error:
                lines.append(" ".join(self.write_error.split()))
        except Exception as exc:
            report_internal_error("pytest plugin: terminal summary", exc)
            return
        terminalreporter.write_sep("=", "sqlwatch")
        for line in lines:
            terminalreporter.write_line(line)


def _check_max_queries(nodeid: str, report: Report, n: int) -> None:
    """As ``assert_max_queries``: transaction control is not counted, and the
    per-operation counts cover the statements past ``max_statements`` too."""
    __tracebackhide__ = True
    total = sum(
        count
        for operation, count in report.operations.items()
        if operation not in TRANSACTION_CONTROL
    )
    if total > n:
        counted = [s for s in report.statements if s.operation not in TRANSACTION_CONTROL]
        missing = total - len(counted)
        more = f"\n  ... and {missing} more not kept (max_statements)" if missing > 0 else ""
        raise QueryCountExceeded(
            f"expected at most {n} queries in {nodeid} (@pytest.mark.sqlwatch), {total} ran "
            f"(transaction control not counted):\n{format_statements(counted)}{more}"
        )


def describe_n_plus_one(nodeid: str, findings: tuple[NPlusOne, ...]) -> str:
    plural = "query pattern" if len(findings) == 1 else "query patterns"
    return (
        f"{len(findings)} N+1 {plural} in {nodeid}:\n{format_findings(findings)}\n"
        "(accepted? @pytest.mark.sqlwatch(n_plus_one='ignore') on the test, or "
        "sqlwatch.ignore_n_plus_one(...) around the loop)"
    )


def _warn(item: pytest.Item, finding: NPlusOne) -> None:
    """One warning per finding, located at its call site (the line to fix)."""
    __tracebackhide__ = True  # under filterwarnings=error, the failure is the message
    message = NPlusOneWarning(f"N+1 in {item.nodeid}:\n{format_findings([finding])}")
    path, lineno, _ = item.location
    filename, line = path, (lineno or 0) + 1
    if finding.call_site:
        site_path, site_line, _ = split_call_site(finding.call_site)
        if site_line is not None:
            filename, line = site_path, site_line
    warnings.warn_explicit(message, NPlusOneWarning, filename, line)


def summary_lines(
    report: Report, tests: dict[str, None], *, written: Path | None = None
) -> list[str]:
    """The terminal summary: the tests with the most queries, then every N+1."""
    by_test = [s for s in report.scopes if s.name in tests]
    findings = sum(len(s.n_plus_one) for s in by_test)
    lines = [
        f"{len(tests)} test{'s' if len(tests) != 1 else ''} watched: {report.query_count} "
        f"queries, {report.total_query_ms:.1f} ms in the database, "
        f"{findings} N+1 finding{'s' if findings != 1 else ''}"
    ]
    busiest = sorted(by_test, key=lambda s: (-s.query_count, s.name))[:TOP_TESTS]
    busiest = [s for s in busiest if s.query_count]
    if busiest:
        lines.append("tests with the most queries:")
        lines.append(f"  {'queries':>7}  {'query ms':>8}  {'N+1':>3}  test")
        for s in busiest:
            lines.append(
                f"  {s.query_count:>7}  {s.total_query_ms:>8.1f}  {len(s.n_plus_one):>3}  {s.name}"
            )
    if findings:
        lines.append("N+1 queries:")
        for s in by_test:
            if s.n_plus_one:
                lines.append(f"  {s.name}")
                lines.extend(f"  {line}" for line in format_findings(s.n_plus_one).splitlines())
    if tests and report.query_count == 0:
        lines.append(
            "sqlwatch saw no SQL statement: is your engine instrumented? Call "
            "sqlwatch.instrument(engine) where the engine is created (or in conftest.py)."
        )
    if written is not None:
        lines.append(f"report: {written}")
    return lines
