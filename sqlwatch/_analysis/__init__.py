"""Pure functions of SQL strings: what a statement does, to what, and its family.

No SQLAlchemy here: the capture code hands over the SQL text and the dialect
name, and gets back a ``StatementInfo`` (see ``docs/analysis.md``).
"""

from __future__ import annotations

from sqlwatch._analysis._analyzer import (
    CacheInfo,
    StatementAnalyzer,
    analyze,
    analyzer_for,
    clear_caches,
    redact_literals,
)
from sqlwatch._analysis._keywords import TRANSACTION_CONTROL
from sqlwatch._analysis._redact import redact_literals_of_any

__all__ = [
    "TRANSACTION_CONTROL",
    "CacheInfo",
    "StatementAnalyzer",
    "analyze",
    "analyzer_for",
    "clear_caches",
    "redact_literals",
    "redact_literals_of_any",
]
