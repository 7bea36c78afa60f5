"""The exceptions sqlwatch raises on purpose.

::

    Exception
     └── SQLWatchError                       anything sqlwatch raises deliberately
          ├── QueryCountExceeded (AssertionError)   assert_max_queries failed
          ├── NPlusOneDetected  (AssertionError)    assert_no_n_plus_one failed
          └── ReportError       (ValueError)        Report.load / from_dict: a file or
                                                    dict that is not a report

    UserWarning
     └── NPlusOneWarning                     an N+1 in a test, under
                                             --sqlwatch-n-plus-one=warn (pytest plugin)

The assertion errors subclass ``AssertionError`` so that pytest and unittest
report them as test failures, not as errors. Bad options are plain ``TypeError``
(an unknown name, as Python does for keywords) or ``ValueError`` (a bad value).
Errors *inside* sqlwatch's listeners never surface: they are logged and swallowed.
"""

from __future__ import annotations

__all__ = ["NPlusOneDetected", "NPlusOneWarning", "QueryCountExceeded", "SQLWatchError"]


class SQLWatchError(Exception):
    """Base class of the exceptions sqlwatch raises on purpose."""


class QueryCountExceeded(SQLWatchError, AssertionError):
    """More statements ran than ``assert_max_queries`` allowed."""


class NPlusOneDetected(SQLWatchError, AssertionError):
    """``assert_no_n_plus_one`` saw a loop issuing one query per row."""


class NPlusOneWarning(UserWarning):
    """An N+1 in a test, when the pytest plugin is told to warn. Filter it as
    ``sqlwatch.errors.NPlusOneWarning``: ``filterwarnings = error`` makes it fail
    the test, like any warning."""
