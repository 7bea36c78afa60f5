"""sqlwatch: every SQL statement of a SQLAlchemy application, visible and accountable.

::

    import sqlwatch

    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        run_the_page()
    print(w.query_count, w.n_plus_one)

The public API is exactly ``__all__``; everything else is internal.

The names load on first use (PEP 562). The pytest plugin lives in this package
and pytest imports it in every run of every project that installs sqlwatch, so
``import sqlwatch`` alone must not import SQLAlchemy, sqlglot, psutil or
OpenTelemetry: the plugin pays for them only when a test uses it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from sqlwatch._version import __version__

if TYPE_CHECKING:
    from sqlwatch._analysis import analyze
    from sqlwatch.assertions import assert_max_queries, assert_no_n_plus_one, ignore_n_plus_one
    from sqlwatch.config import Options
    from sqlwatch.errors import NPlusOneDetected, QueryCountExceeded, SQLWatchError
    from sqlwatch.exporters.log import JSONFormatter
    from sqlwatch.instrumentation import Instrumentation, instrument, reset, uninstrument
    from sqlwatch.instrumentation import process_report as report
    from sqlwatch.records import (
        Duplicate,
        FingerprintStats,
        Leak,
        NPlusOne,
        PoolStats,
        Resources,
        ScopeSummary,
        SessionStats,
        Statement,
        StatementInfo,
        UnusedEagerLoad,
    )
    from sqlwatch.report import Report, ReportError
    from sqlwatch.watch import Watch, watch

__all__ = [
    "Duplicate",
    "FingerprintStats",
    "Instrumentation",
    "JSONFormatter",
    "Leak",
    "NPlusOne",
    "NPlusOneDetected",
    "Options",
    "PoolStats",
    "QueryCountExceeded",
    "Report",
    "ReportError",
    "Resources",
    "SQLWatchError",
    "ScopeSummary",
    "SessionStats",
    "Statement",
    "StatementInfo",
    "UnusedEagerLoad",
    "Watch",
    "__version__",
    "analyze",
    "assert_max_queries",
    "assert_no_n_plus_one",
    "ignore_n_plus_one",
    "instrument",
    "report",
    "reset",
    "uninstrument",
    "watch",
]

_RECORDS = (
    "Duplicate FingerprintStats Leak NPlusOne PoolStats Resources ScopeSummary "
    "SessionStats Statement StatementInfo UnusedEagerLoad"
)
_SOURCES: dict[str, tuple[str, str]] = {
    "analyze": ("sqlwatch._analysis", "analyze"),
    "assert_max_queries": ("sqlwatch.assertions", "assert_max_queries"),
    "assert_no_n_plus_one": ("sqlwatch.assertions", "assert_no_n_plus_one"),
    "ignore_n_plus_one": ("sqlwatch.assertions", "ignore_n_plus_one"),
    "Options": ("sqlwatch.config", "Options"),
    "NPlusOneDetected": ("sqlwatch.errors", "NPlusOneDetected"),
    "QueryCountExceeded": ("sqlwatch.errors", "QueryCountExceeded"),
    "SQLWatchError": ("sqlwatch.errors", "SQLWatchError"),
    "JSONFormatter": ("sqlwatch.exporters.log", "JSONFormatter"),
    "Instrumentation": ("sqlwatch.instrumentation", "Instrumentation"),
    "instrument": ("sqlwatch.instrumentation", "instrument"),
    "reset": ("sqlwatch.instrumentation", "reset"),
    "uninstrument": ("sqlwatch.instrumentation", "uninstrument"),
    "report": ("sqlwatch.instrumentation", "process_report"),
    **{name: ("sqlwatch.records", name) for name in _RECORDS.split()},
    "Report": ("sqlwatch.report", "Report"),
    "ReportError": ("sqlwatch.report", "ReportError"),
    "Watch": ("sqlwatch.watch", "Watch"),
    "watch": ("sqlwatch.watch", "watch"),
}


def _load(name: str) -> Any:
    module, attribute = _SOURCES[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name is still an error

    def __getattr__(name: str) -> Any:
        if name in _SOURCES:
            return _load(name)
        raise AttributeError(f"module 'sqlwatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Keeps ``sqlwatch.report`` and ``sqlwatch.watch`` the functions.

    Importing a submodule binds it on its package, so the first import of the
    ``sqlwatch.report`` or ``sqlwatch.watch`` module would otherwise replace
    the public function of the same name.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SOURCES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
