"""Assertion helpers in pytest-django's shape: expected vs actual, statements listed.

A failure message must be enough to fix the code from a CI log, without ``-v``:
each statement numbered with its operation, tables, call site and normalized
SQL; each N+1 with its relationship or SQL, count, call site and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlwatch._analysis import TRANSACTION_CONTROL
from sqlwatch.detectors.n_plus_one import ignoring
from sqlwatch.errors import NPlusOneDetected, QueryCountExceeded
from sqlwatch.records import NPlusOne, Statement
from sqlwatch.watch import Watch

__all__ = [
    "assert_max_queries",
    "assert_no_n_plus_one",
    "format_findings",
    "format_statements",
    "ignore_n_plus_one",
]


def format_statements(statements: list[Statement]) -> str:
    lines = []
    for number, statement in enumerate(statements, 1):
        tables = ", ".join(statement.tables) or "-"
        where = statement.call_site or "unknown call site"
        lines.append(
            f"  {number}. {statement.operation} {tables} at {where}\n     {statement.normalized}"
        )
    return "\n".join(lines)


def _headline(finding: NPlusOne) -> str:
    owner = (finding.relationship or "").partition(".")[0] or "row"
    timing = f"{finding.count} queries, {finding.total_ms:.2f} ms"
    if finding.kind == "lazy_load" and finding.relationship:
        return f"lazy load of {finding.relationship}, one query per {owner} ({timing})"
    if finding.kind == "column_load" and finding.relationship:
        return f"column load of {finding.relationship}, one query per {owner} ({timing})"
    tables = ", ".join(finding.tables) or "-"
    return f"SELECT {tables} repeated with different parameters ({timing})"


def format_findings(findings: Iterable[NPlusOne]) -> str:
    """Numbered N+1 findings, each with where it is, its SQL and how to fix it."""
    lines = []
    for number, finding in enumerate(findings, 1):
        lines.append(f"  {number}. {_headline(finding)}")
        lines.append(f"     at {finding.call_site or 'an unknown call site'}")
        lines.append(f"     {finding.normalized}")
        if finding.loaded_by:
            lines.append(f"     parents loaded by: {finding.loaded_by}")
        lines.append(f"     fix: {finding.suggestion}")
    return "\n".join(lines)


@contextmanager
def assert_max_queries(
    n: int,
    *,
    name: str | None = None,
    include_tcl: bool = False,
    engines: Any = None,
) -> Iterator[Watch]:
    """Fail with ``QueryCountExceeded`` when the block runs more than ``n`` statements.

    Transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) is left
    out unless ``include_tcl=True``: it depends on the session's configuration,
    not on the code under test. ``engines`` counts one engine (or a few); by
    default every instrumented engine counts.
    """
    __tracebackhide__ = True
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"assert_max_queries(n) needs an integer n >= 0, got {n!r}")
    with Watch(name, engines=engines, detect_unused_eager_loads=False) as watch:
        yield watch
    report = watch.report
    # the per-operation counts cover every statement, even past max_statements
    total = sum(
        count
        for operation, count in report.operations.items()
        if include_tcl or operation not in TRANSACTION_CONTROL
    )
    if total > n:
        counted = [
            s for s in report.statements if include_tcl or s.operation not in TRANSACTION_CONTROL
        ]
        label = f" in {name!r}" if name else ""
        missing = total - len(counted)
        more = f"\n  ... and {missing} more not kept (max_statements)" if missing > 0 else ""
        tcl = "" if include_tcl else " (transaction control not counted)"
        raise QueryCountExceeded(
            f"expected at most {n} queries{label}, {total} ran{tcl}:\n"
            f"{format_statements(counted)}{more}"
        )


@contextmanager
def assert_no_n_plus_one(
    *, name: str | None = None, engines: Any = None, **options: Any
) -> Iterator[Watch]:
    """Fail with ``NPlusOneDetected`` when the block has an N+1.

    ``options`` are those of ``watch()`` (``n_plus_one_threshold``, ``ignore``...).
    The message names each finding's relationship or SQL, its count, call site
    and the loader option that fixes it. An exception raised in the block passes
    through unchanged.
    """
    __tracebackhide__ = True
    options.setdefault("detect_unused_eager_loads", False)
    with Watch(name, engines=engines, **options) as watch:
        yield watch
    findings = watch.n_plus_one
    if findings:
        label = f" in {name!r}" if name else ""
        plural = "query pattern" if len(findings) == 1 else "query patterns"
        raise NPlusOneDetected(
            f"{len(findings)} N+1 {plural} detected{label}:\n{format_findings(findings)}\n"
            "(a loop the team has accepted: wrap it in sqlwatch.ignore_n_plus_one(...))"
        )


@contextmanager
def ignore_n_plus_one(*patterns: str, reason: str | None = None) -> Iterator[None]:
    """Accept the N+1s of a block: a ``# noqa`` for N+1 findings.

    ``patterns`` are as for the ``ignore`` option (relationship names such as
    ``"User.addresses"``, table names, call-site globs such as ``"app/legacy/*"``);
    none means every N+1 in the block. ``reason`` documents why, for the reader.
    Statements in the block still count everywhere else (query counts,
    duplicates, slow queries).
    """
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(
                "ignore_n_plus_one() patterns must be non-empty strings (a relationship "
                f"such as 'User.addresses', a table, or a call-site glob), got {pattern!r}"
            )
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"ignore_n_plus_one(reason=...) must be a string, got {reason!r}")
    with ignoring(tuple(patterns)):
        yield
