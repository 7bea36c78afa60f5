"""Assertion helpers in pytest-django's shape: expected vs actual, statements listed.

A failure message must be enough to fix the code from a CI log, without ``-v``:
each statement numbered with its operation, tables, call site and normalized
SQL; each N+1 with its relationship or SQL, count, call site and the fix.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from sqlwatch._analysis import TRANSACTION_CONTROL
from sqlwatch.detectors.n_plus_one import ignoring
from sqlwatch.errors import NPlusOneDetected, QueryCountExceeded
from sqlwatch.records import NPlusOne, Statement
from sqlwatch.watch import Watch

__all__ = [
    "Block",
    "assert_max_queries",
    "assert_no_n_plus_one",
    "format_findings",
    "format_statements",
    "ignore_n_plus_one",
]


T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Block(Generic[T]):
    """What the helpers return: a context manager (``with`` and ``async with``) and
    a decorator of sync and async functions, as ``watch()`` is.

    A plain ``@contextmanager`` would also decorate, but around an ``async def``
    it only wraps the call that creates the coroutine: the block would be over
    before the function's first statement ran, and the assertion would pass
    without having checked anything.
    """

    def __init__(self, factory: Callable[[], AbstractContextManager[T]]) -> None:
        self._factory = factory
        self._open: AbstractContextManager[T] | None = None

    def __enter__(self) -> T:
        if self._open is not None:  # as watch(): a block checks one thing at a time
            raise RuntimeError("this block is already open; call the helper again to nest")
        manager = self._factory()
        value = manager.__enter__()
        self._open = manager
        return value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        __tracebackhide__ = True
        manager, self._open = self._open, None
        if manager is None:
            return None
        return manager.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> T:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        __tracebackhide__ = True
        return self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        """Check every call of ``fn``, each in a block of its own."""
        factory = self._factory
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            # its body runs after the call returns, outside any block around the call
            raise TypeError(
                f"cannot decorate the generator function {fn.__qualname__}: its body runs "
                "as it is iterated, after the call; use a `with` block inside it"
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True
                with factory():
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with factory():
                return fn(*args, **kwargs)

        return cast(F, wrapper)


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


def assert_max_queries(
    n: int,
    *,
    name: str | None = None,
    include_tcl: bool = False,
    engines: Any = None,
) -> Block[Watch]:
    """Fail with ``QueryCountExceeded`` when the block runs more than ``n`` statements.

    Transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) is left
    out unless ``include_tcl=True``: it depends on the session's configuration,
    not on the code under test. ``engines`` counts one engine (or a few); by
    default every instrumented engine counts. Also a decorator (sync and async).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"assert_max_queries(n) needs an integer n >= 0, got {n!r}")
    return Block(functools.partial(_max_queries, n, name, include_tcl, engines))


@contextmanager
def _max_queries(n: int, name: str | None, include_tcl: bool, engines: Any) -> Iterator[Watch]:
    __tracebackhide__ = True
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


def assert_no_n_plus_one(
    *, name: str | None = None, engines: Any = None, **options: Any
) -> Block[Watch]:
    """Fail with ``NPlusOneDetected`` when the block has an N+1.

    ``options`` are those of ``watch()`` (``n_plus_one_threshold``, ``ignore``...).
    The message names each finding's relationship or SQL, its count, call site
    and the loader option that fixes it. An exception raised in the block passes
    through unchanged. Also a decorator (sync and async).
    """
    options.setdefault("detect_unused_eager_loads", False)
    return Block(functools.partial(_no_n_plus_one, name, engines, options))


@contextmanager
def _no_n_plus_one(name: str | None, engines: Any, options: dict[str, Any]) -> Iterator[Watch]:
    __tracebackhide__ = True
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


def ignore_n_plus_one(*patterns: str, reason: str | None = None) -> Block[None]:
    """Accept the N+1s of a block: a ``# noqa`` for N+1 findings.

    ``patterns`` are as for the ``ignore`` option (relationship names such as
    ``"User.addresses"``, table names, call-site globs such as ``"app/legacy/*"``);
    none means every N+1 in the block. ``reason`` documents why, for the reader.
    Statements in the block still count everywhere else (query counts,
    duplicates, slow queries). Also a decorator (sync and async).
    """
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(
                "ignore_n_plus_one() patterns must be non-empty strings (a relationship "
                f"such as 'User.addresses', a table, or a call-site glob), got {pattern!r}"
            )
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"ignore_n_plus_one(reason=...) must be a string, got {reason!r}")
    return Block(functools.partial(ignoring, tuple(patterns)))
