"""Duplicates: the same SQL with the same parameters, run more than once.

Parameters are compared by hash (taken at capture), so nothing of their values
is kept unless ``capture_params`` is on. Transaction control is not a caching
opportunity and is left out; executemany batches never count.

A duplicate is a repeat within one unit of work: the request that asks twice
for the same row could have kept the first answer; fifty requests that each
ask once could not. A ``watch()`` is its own unit. The process-wide scope
judges each statement in the unit it ran in (the outermost open scope,
``ScopeChain.unit``), the most recent ``MAX_UNITS`` units at a time, and adds
up the repeats it found; outside any scope a statement is counted, not judged
(``sqlwatch._pipeline``).
"""

from __future__ import annotations

from collections import OrderedDict
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
_UNIT_FIELDS = itemgetter(1, 2, 8, 11, 13)
"""The same, and the unit of work."""
MAX_UNITS = 64
"""Units of work the process-wide scope follows at once (least recently used out)."""
MAX_PER_UNIT = 4_096
"""Distinct statements remembered per unit of the process-wide scope."""


class Duplicates(Detector):
    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self.limit = max(scope.options.max_statements, 1)
        self.process_wide = scope.process_wide
        self.seen: dict[int, list[Any]] = {}
        """hash of (sql, parameter hash) -> [sql, count, call sites]; at most
        ``max_statements`` keys. An int key keeps the per-statement lookup cheap."""
        self._units: OrderedDict[int, dict[int, int]] = OrderedDict()
        """Process-wide: unit of work -> how often each statement ran in it."""

    def __call__(self, execution: Execution) -> None:
        self.batch([execution])

    def batch(self, executions: list[Execution]) -> None:
        if self.process_wide:
            self._batch_by_unit(executions)
            return
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

    def _batch_by_unit(self, executions: list[Execution]) -> None:
        """The process-wide scope: a statement is a duplicate when it repeats in
        its own unit of work. ``seen`` then holds the repeats only, their count
        summed over units (both runs of a unit's first repeat, then one a run)."""
        units = self._units
        seen = self.seen
        current_unit = 0
        runs: dict[int, int] = {}
        for sql, info, site, hashed, unit in map(_UNIT_FIELDS, executions):
            if not unit or hashed == -1 or info.operation in TRANSACTION_CONTROL:
                continue
            if unit != current_unit:
                current_unit = unit
                found = units.get(unit)
                if found is None:
                    if len(units) >= MAX_UNITS:
                        units.popitem(last=False)
                    found = units[unit] = {}
                else:
                    units.move_to_end(unit)
                runs = found
            key = hash(sql) ^ hashed
            count = runs.get(key)
            if count is None:
                if len(runs) < MAX_PER_UNIT:
                    runs[key] = 1
                continue
            runs[key] = count + 1
            entry = seen.get(key)
            if entry is None:
                if len(seen) < self.limit:
                    seen[key] = [sql, 2, {site: None}]
                continue
            entry[1] += 2 if count == 1 else 1
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
