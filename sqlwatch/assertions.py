"""Assertion helpers in pytest-django's shape: expected vs actual, statements listed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlwatch._analysis import TRANSACTION_CONTROL
from sqlwatch.errors import QueryCountExceeded
from sqlwatch.records import Statement
from sqlwatch.watch import Watch

__all__ = ["assert_max_queries", "format_statements"]


def format_statements(statements: list[Statement]) -> str:
    lines = []
    for number, statement in enumerate(statements, 1):
        tables = ", ".join(statement.tables) or "-"
        where = statement.call_site or "unknown call site"
        lines.append(
            f"  {number}. {statement.operation} {tables} at {where}\n     {statement.normalized}"
        )
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
    not on the code under test.
    """
    __tracebackhide__ = True
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"assert_max_queries(n) needs an integer n >= 0, got {n!r}")
    with Watch(name, engines=engines, detect_unused_eager_loads=False) as watch:
        yield watch
    counted = [s for s in watch.queries if include_tcl or s.operation not in TRANSACTION_CONTROL]
    dropped = watch.report.dropped_statements
    total = len(counted) + dropped
    if total > n:
        label = f" in {name!r}" if name else ""
        more = f"\n  ... and {dropped} more not kept (max_statements)" if dropped else ""
        raise QueryCountExceeded(
            f"expected at most {n} queries{label}, {total} ran:\n"
            f"{format_statements(counted)}{more}"
        )


@contextmanager
def assert_no_n_plus_one(**options: Any) -> Iterator[Watch]:
    raise NotImplementedError("built by the N+1 detector work")
    yield  # pragma: no cover


@contextmanager
def ignore_n_plus_one(*patterns: str, reason: str | None = None) -> Iterator[None]:
    raise NotImplementedError("built by the N+1 detector work")
    yield  # pragma: no cover
