"""sqlwatch: every SQL statement of a SQLAlchemy application, visible and accountable.

::

    import sqlwatch

    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        run_the_page()
    print(w.query_count, w.n_plus_one)

The public API is exactly ``__all__``; everything else is internal.
"""

from __future__ import annotations

from sqlwatch._analysis import analyze
from sqlwatch._version import __version__
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
