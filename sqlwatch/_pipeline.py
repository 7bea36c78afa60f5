"""From captured statements to scopes, in batches.

The listener appends a ``RawExecution`` to one buffer and returns; the buffer
is processed (analysis, parameter hashing, aggregation, detectors) when it
holds ``BATCH`` statements, when a statement needs attention now (slow, an
error, an eager loader's statement, or a lazy load while an exporter wants
timely N+1 findings), and whenever a scope is read or closed. Otherwise an N+1
is reported when its batch is processed: at the latest when its scope closes.
The buffer is bounded by ``BATCH``: processing is deferred, never dropped.
Processing runs under one lock; a re-entrant one, because an exporter may
itself run SQL.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from sqlwatch._capture.execution import Execution, RawExecution
from sqlwatch._guard import report_internal_error
from sqlwatch._rss import SAMPLER as RSS_SAMPLER

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["PIPELINE", "Pipeline", "param_hash"]

BATCH = 256
_new_execution = tuple.__new__


def param_hash(parameters: Any) -> int:
    """Tells equal parameter sets apart without keeping the values."""
    if not parameters:
        return 0
    try:
        if isinstance(parameters, dict):
            return hash(tuple(parameters.values()))
        return hash(parameters if isinstance(parameters, tuple) else tuple(parameters))
    except TypeError:  # a list or dict value (arrays, JSON)
        return hash(repr(parameters))


def process(raw: RawExecution) -> Execution:
    tracker, sql, params, start, duration, rowcount, batch, site, orm, error, chain = raw
    keep = params if tracker.capture_params or chain.params else None
    if batch:
        hashed = -1
    elif type(params) is tuple:
        try:
            hashed = hash(params)
        except TypeError:
            hashed = param_hash(params)
    else:
        hashed = param_hash(params)
    return _new_execution(
        Execution,
        (
            tracker,
            sql,
            tracker.cached_info(sql) or tracker.analyzer(sql),
            start,
            duration,
            rowcount if rowcount is not None and rowcount >= 0 else None,
            batch > 0,
            batch or 1,
            site,
            orm,
            error,
            hashed,
            keep,
            chain.unit,
            chain.n_plus_one_ignore,
        ),
    )


class Pipeline:
    def __init__(self) -> None:
        self.pending: deque[RawExecution] = deque()
        self.lock = threading.RLock()
        self.process_scope: Scope | None = None

    def flush(self) -> None:
        """Process everything captured so far (any thread's)."""
        pending = self.pending
        if not pending:
            return
        with self.lock:
            popleft = pending.popleft
            batch: list[Execution] = []
            by_scope: dict[Scope, list[Execution]] = {}
            while pending:
                try:
                    raw = popleft()
                except IndexError:
                    break
                try:
                    execution = process(raw)
                except Exception as exc:
                    report_internal_error("statement processing", exc)
                    continue
                batch.append(execution)
                for scope in raw.chain.scopes:
                    by_scope.setdefault(scope, []).append(execution)
            process_scope = self.process_scope
            if process_scope is not None:
                by_scope = {process_scope: batch, **by_scope}
            for scope, executions in by_scope.items():
                try:
                    scope.add_batch(executions)
                except Exception as exc:  # flush runs in the app's call: never raise there
                    report_internal_error("scope aggregation", exc)
        RSS_SAMPLER.maybe_sample()  # rate-limited: a comparison unless 50 ms have passed

    def clear(self) -> None:
        with self.lock:
            self.pending.clear()
            self.process_scope = None


PIPELINE = Pipeline()
