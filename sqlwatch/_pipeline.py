"""From captured statements to scopes, in batches.

The listener appends a ``RawExecution`` to one buffer and returns; the buffer
is processed (analysis, parameter hashing, aggregation, detectors) when it
holds ``BATCH`` statements, when a statement needs attention now (slow, an
error, an eager loader's statement, or a lazy load while an exporter wants
timely N+1 findings and its loop is not reported yet), and whenever a scope is
read or closed. Otherwise an N+1 is reported when its batch is processed: at the
latest when its scope closes. The buffer is bounded by ``BATCH``: processing is
deferred, never dropped. Processing runs under one lock; a re-entrant one,
because an exporter may itself run SQL.

Counted statements. Outside any scope, a statement belongs to the process-wide
scope alone, which only counts it (aggregates per fingerprint), judges nothing
per statement (a duplicate or a Core N+1 needs a unit of work), and keeps no
more records once its ``max_statements`` are full. From then on the listener
skips the record: it appends the duration (and the call site) to a list kept
per engine and per SQL string (``Counted``), and the lists are folded into the
process-wide aggregates in bulk: every ``COUNT_FOLD`` statements of the engine,
and whenever the process-wide report is read. Slow and failed statements, ORM loader
statements and anything inside a scope still take the full path.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from sqlwatch._capture.call_sites import CallSite
from sqlwatch._capture.execution import Execution, RawExecution
from sqlwatch._context import current_chain
from sqlwatch._guard import report_internal_error
from sqlwatch._rss import SAMPLER as RSS_SAMPLER

if TYPE_CHECKING:
    from sqlwatch._capture.engine import EngineTracker
    from sqlwatch.scope import Scope

__all__ = ["COUNT_FOLD", "MAX_COUNTED", "PIPELINE", "Counted", "Pipeline", "param_hash"]

BATCH = 256
COUNT_FOLD = 4_096
"""Counted statements of one engine waiting to be folded into the aggregates, at
most: what bounds their memory (a few hundred KB), however many SQL strings."""
MAX_COUNTED = 1_024
"""Distinct SQL strings counted per engine; others take the full path."""
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


class Counted:
    """Durations and call sites of one SQL string run outside any scope, not yet
    folded. The listener appends without a lock; ``Pipeline._fold`` takes what is
    there under the lock and deletes exactly that much (an append in between
    lands after it and waits for the next fold)."""

    __slots__ = ("durations", "sites")

    def __init__(self) -> None:
        self.durations: list[int] = []
        self.sites: list[CallSite] = []


class Pipeline:
    def __init__(self) -> None:
        self.pending: deque[RawExecution] = deque()
        self.lock = threading.RLock()
        self.process_scope: Scope | None = None
        self.counting = False
        """Whether statements outside any scope are counted (``Counted``)."""
        self.trackers: list[EngineTracker] = []
        """Attached engine trackers, whose counted statements ``fold_all`` folds."""
        self._origin: RawExecution | None = None
        """The statement whose capture asked for the flush under way (its thread
        runs the flush), for ``ran_here``."""

    def flush(self, origin: RawExecution | None = None) -> None:
        """Process everything captured so far (any thread's). ``origin``: the
        statement just captured in this thread that made the listener flush."""
        pending = self.pending
        if not pending:
            return
        with self.lock:
            outer_origin, self._origin = self._origin, origin
            try:
                self._process_pending()
            finally:  # an exporter that runs SQL flushes within this flush
                self._origin = outer_origin
        RSS_SAMPLER.maybe_sample()  # rate-limited: a comparison unless 50 ms have passed

    def _process_pending(self) -> None:
        """Lock held."""
        pending = self.pending
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

    def ran_here(self, execution: Execution) -> bool:
        """Whether a statement being processed ran in the current thread or task:
        in the same unit of work (the outermost scope open around it), or, outside
        any scope, the very statement that made this thread flush. Called while
        the batch is processed."""
        if execution.unit:
            return execution.unit == current_chain.get().unit
        origin = self._origin
        return (
            origin is not None
            and origin.start_ns == execution.start_ns
            and origin.tracker is execution.tracker
        )

    # -- counted statements --------------------------------------------------

    def attach(self, tracker: EngineTracker) -> None:
        with self.lock:
            self.trackers.append(tracker)
            tracker.counted = {} if self.counting else None

    def detach(self, tracker: EngineTracker) -> None:
        with self.lock:
            self.fold_tracker(tracker)
            tracker.counted = None
            if tracker in self.trackers:
                self.trackers.remove(tracker)

    def start_counting(self) -> None:
        """The process-wide scope keeps no more records: count from now on."""
        with self.lock:
            if not self.counting:
                self.counting = True
                for tracker in self.trackers:
                    tracker.counted = {}

    def fold_all(self) -> None:
        """Everything counted so far, into the process-wide aggregates (before it
        is read)."""
        if self.counting:
            with self.lock:
                for tracker in self.trackers:
                    self.fold_tracker(tracker)

    def fold_tracker(self, tracker: EngineTracker) -> None:
        """One engine's counted statements, into the process-wide aggregates."""
        counted = tracker.counted
        if not counted:
            return
        with self.lock:
            for sql, entry in list(counted.items()):
                self._fold(tracker, sql, entry)
        RSS_SAMPLER.maybe_sample()

    def _fold(self, tracker: EngineTracker, sql: str, entry: Counted) -> None:
        """The lock is held."""
        durations, sites = entry.durations, entry.sites
        n_durations, n_sites = len(durations), len(sites)
        if not n_durations:
            return
        taken, taken_sites = durations[:n_durations], sites[:n_sites]
        del durations[:n_durations], sites[:n_sites]
        scope = self.process_scope
        if scope is None:
            return
        try:
            info = tracker.cached_info(sql) or tracker.analyzer(sql)
            scope.add_counted(info, taken, taken_sites)
        except Exception as exc:
            report_internal_error("counted statements", exc)

    def clear(self) -> None:
        with self.lock:
            self.pending.clear()
            self.process_scope = None
            self.counting = False
            for tracker in self.trackers:
                tracker.counted = None
            self.trackers.clear()


PIPELINE = Pipeline()


def _renew_locks_in_child() -> None:
    """A fork while another thread processes a batch leaves the child holding the
    locks of a thread that does not exist there: its first watch would wait for
    ever. The batch that thread had taken is lost to the child; nothing else is."""
    PIPELINE.lock = threading.RLock()
    scope = PIPELINE.process_scope
    if scope is not None:
        scope.renew_lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_renew_locks_in_child)
