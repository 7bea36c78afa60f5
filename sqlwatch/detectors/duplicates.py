"""Duplicates: the same SQL with the same parameters, run more than once.

Parameters are compared by hash (taken at capture), so nothing of their values
is kept unless ``capture_params`` is on. Transaction control is not a caching
opportunity and is left out; executemany batches never count. The process-wide
scope looks only at statements that ran inside some scope (a watch, a request,
a test): outside any, a statement is counted, not judged (``sqlwatch._pipeline``).
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlwatch._analysis import TRANSACTION_CONTROL
from sqlwatch._capture.call_sites import CallSite, format_call_site
from sqlwatch._capture.execution import Execution
from sqlwatch.detectors.base import Detector
from sqlwatch.records import Duplicate

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["Duplicates"]

_MAX_SITES = 5
_FIELDS = itemgetter(1, 2, 8, 11)
"""sql, info, call_site, param_hash of an ``Execution``, picked in C."""


class Duplicates(Detector):
    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self.limit = max(scope.options.max_statements, 1)
        self.process_wide = scope.process_wide
        self.seen: dict[int, list[Any]] = {}
        """hash of (sql, parameter hash) -> [sql, count, call sites]; at most
        ``max_statements`` keys. An int key keeps the per-statement lookup cheap."""

    def __call__(self, execution: Execution) -> None:
        self.batch([execution])

    def batch(self, executions: list[Execution]) -> None:
        if self.process_wide:
            executions = [e for e in executions if e.unit]
        seen = self.seen
        for sql, info, site, hashed in map(_FIELDS, executions):
            if hashed == -1 or info.operation in TRANSACTION_CONTROL:
                continue
            key = hash(sql) ^ hashed
            entry = seen.get(key)
            if entry is None:
                if len(seen) < self.limit:
                    seen[key] = [sql, 1, {site: None}]
                continue
            entry[1] += 1
            sites: dict[CallSite | None, None] = entry[2]
            if len(sites) < _MAX_SITES:
                sites[site] = None

    def contribute(self, fields: dict[str, Any]) -> None:
        by_sql: dict[str, Duplicate] = {}
        for sql, count, sites in self.seen.values():
            if count < 2:
                continue
            texts = tuple(t for t in (format_call_site(s) for s in sites) if t is not None)
            seen = by_sql.get(sql)
            if seen is None:
                by_sql[sql] = Duplicate(sql=sql, count=count, call_sites=texts)
            else:  # the same SQL repeated with several distinct parameter sets
                by_sql[sql] = Duplicate(
                    sql=sql,
                    count=seen.count + count,
                    call_sites=tuple(dict.fromkeys(seen.call_sites + texts)),
                )
        fields["duplicates"] = tuple(sorted(by_sql.values(), key=lambda d: -d.count))
