"""Scopes: the unit everything is counted in.

A scope is a ``watch()``, a test, a request, or the process-wide scope that
``instrument()`` opens. Capture hands each statement to every open scope of the
current context (``sqlwatch._context``) and to the process-wide scope; each
scope aggregates under its own lock and runs its detectors. Exporter calls are
collected under the lock and made after it is released, so an exporter that
itself runs SQL cannot deadlock its scope.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from time import perf_counter_ns
from typing import Any, NamedTuple

from sqlwatch._aggregate import Aggregator
from sqlwatch._capture.call_sites import CallSite
from sqlwatch._capture.execution import (
    Execution,
    epoch_ns_to_iso,
    perf_to_epoch_ns,
    to_statement,
)
from sqlwatch._context import finding_from_elsewhere
from sqlwatch._guard import report_internal_error
from sqlwatch._pipeline import PIPELINE
from sqlwatch._rss import current_rss
from sqlwatch.config import Options
from sqlwatch.detectors import DETECTORS
from sqlwatch.detectors.n_plus_one import NPlusOneDetector
from sqlwatch.exporters import resolve_exporters
from sqlwatch.records import NPlusOne, Resources, ScopeSummary, Statement, StatementInfo
from sqlwatch.report import Report, merge_n_plus_one

__all__ = ["Scope", "ScopeRun"]

MAX_CHILD_SCOPES = 10_000
OTHER_SCOPES = "(other scopes)"
"""Where runs of further names go once ``MAX_CHILD_SCOPES`` names are kept: their
statements still count, under one name (names made from raw URLs, say)."""
MAX_DISTINCT_COUNTS = 1_000


def _count_percentiles(frequencies: dict[int, int]) -> dict[str, float]:
    """Exact p50/p95/max of per-run query counts (nearest rank)."""
    if not frequencies:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    total = sum(frequencies.values())
    ordered = sorted(frequencies.items())

    def rank(q: float) -> float:
        target = max(1, math.ceil(q * total))
        seen = 0
        for value, n in ordered:
            seen += n
            if seen >= target:
                return float(value)
        return float(ordered[-1][0])

    return {"p50": rank(0.5), "p95": rank(0.95), "max": float(ordered[-1][0])}


class _Resources:
    """RSS and CPU time at scope start."""

    def __init__(self) -> None:
        self.rss_start = current_rss()
        self.cpu_start = time.process_time()

    def snapshot(self, peak: int) -> Resources:
        rss_end = current_rss()
        return Resources(
            rss_start_bytes=self.rss_start,
            rss_end_bytes=rss_end,
            cpu_s=round(time.process_time() - self.cpu_start, 6),
            rss_peak_bytes=max(peak, rss_end, self.rss_start),
        )


class ScopeRun(NamedTuple):
    """One run of a named scope, as the scopes around it count it. A ``Report``
    has the same fields, so either can be given to ``Scope.add_child``."""

    name: str
    query_count: int
    total_query_ms: float
    duration_ms: float
    n_plus_one: tuple[NPlusOne, ...]


class _ChildScopes:
    """Named scopes that closed inside this one, aggregated by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, Any]] = {}

    def add(self, report: Report | ScopeRun) -> None:
        name = report.name
        entry = self.by_name.get(name)
        if entry is None and len(self.by_name) >= MAX_CHILD_SCOPES:
            name = OTHER_SCOPES
            entry = self.by_name.get(name)
            if entry is None:
                logging.getLogger("sqlwatch").warning(
                    "sqlwatch: more than %d scope names; runs of further names are "
                    "counted under %r (are names made from raw paths or IDs?)",
                    MAX_CHILD_SCOPES,
                    OTHER_SCOPES,
                )
        if entry is None:
            entry = self.by_name[name] = {
                "runs": 0,
                "query_count": 0,
                "total_query_ms": 0.0,
                "duration_ms": 0.0,
                "per_run": {},
                "n_plus_one": (),
            }
        entry["runs"] += 1
        entry["query_count"] += report.query_count
        entry["total_query_ms"] += report.total_query_ms
        entry["duration_ms"] += report.duration_ms
        per_run: dict[int, int] = entry["per_run"]
        if report.query_count in per_run or len(per_run) < MAX_DISTINCT_COUNTS:
            per_run[report.query_count] = per_run.get(report.query_count, 0) + 1
        entry["n_plus_one"] = merge_n_plus_one(entry["n_plus_one"], report.n_plus_one)

    def summaries(self) -> tuple[ScopeSummary, ...]:
        result = []
        for name, entry in self.by_name.items():
            result.append(
                ScopeSummary(
                    name=name,
                    runs=entry["runs"],
                    query_count=entry["query_count"],
                    total_query_ms=round(entry["total_query_ms"], 4),
                    duration_ms=round(entry["duration_ms"], 4),
                    queries_per_run=_count_percentiles(entry["per_run"]),
                    n_plus_one=entry["n_plus_one"],
                )
            )
        return tuple(result)


class Scope:
    """Aggregation and detection for one scope. Internal: users hold a ``Watch``."""

    def __init__(
        self,
        name: str,
        options: Options,
        *,
        engine_ids: Iterable[int] | None = None,
        process_wide: bool = False,
        track_resources: bool = True,
    ) -> None:
        self.name = name
        self.naming: Callable[[], str] | None = None
        """Where the name comes from while it may still change (a request's route,
        known once the framework has routed it): read each time exporters are told
        something, so a finding is reported under the name the scope will end with."""
        self.options = options
        self.process_wide = process_wide
        self.track_resources = track_resources
        self.exporters = resolve_exporters(options.exporters)
        self.engine_ids = frozenset(engine_ids) if engine_ids is not None else None
        self.start_ns = perf_counter_ns()
        self.end_ns: int | None = None
        self.closed = False
        self._final_report: Report | None = None
        self._final_resources: Resources | None = None
        self.rss_peak = 0
        self.extensions: dict[str, Any] = {}
        """Per-scope state of components that are not detectors, by name."""
        # Re-entrant: a statement run from a signal handler or a finalizer, while
        # this thread holds the lock, may come back here to be processed.
        self._lock = threading.RLock()
        self._aggregator = Aggregator()
        self._kept: list[Execution] = []
        self._max_kept = options.max_statements
        self._dropped = 0
        self._children = _ChildScopes()
        self._outbox: list[tuple[str, Any, Any, bool]] | None = None
        self._resources = _Resources() if track_resources else None
        self.detectors = [factory(self) for factory in DETECTORS]
        self._per_statement = tuple(d for d in self.detectors if d.per_statement)
        self._n_plus_one_found: dict[Any, Any] = next(
            (d.findings for d in self.detectors if isinstance(d, NPlusOneDetector)), {}
        )

    # -- feeding ------------------------------------------------------------

    def add_batch(self, executions: list[Execution]) -> None:
        """Statements in the order they ran (called by the pipeline)."""
        if self.closed:
            return  # a task that outlived its watch
        engine_ids = self.engine_ids
        if engine_ids is not None:
            executions = [e for e in executions if e.tracker.engine_id in engine_ids]
        with self._lock:
            self._aggregator.add_batch(executions)
            room = self._max_kept - len(self._kept)
            if room >= len(executions):
                self._kept.extend(executions)
            else:
                self._kept.extend(executions[: max(room, 0)])
                self._dropped += len(executions) - max(room, 0)
                if self.process_wide:
                    PIPELINE.start_counting()  # no more records: count the rest
            for detector in self._per_statement:
                try:
                    detector.batch(executions)
                except Exception as exc:  # one broken detector must not stop the others
                    report_internal_error(f"detector {type(detector).__name__}", exc)
            outbox, self._outbox = self._outbox, None
        if outbox:
            self._deliver(outbox)

    def reported_n_plus_one(self, key: tuple[str, str]) -> bool:
        """Whether this scope has reported the N+1 of a loader already (``key``:
        ``(kind, "User.addresses")``): its later loads only add to the count.
        Read without the lock: a finding is only ever added."""
        return key in self._n_plus_one_found

    def add_counted(
        self, info: StatementInfo, durations: list[int], sites: list[CallSite]
    ) -> None:
        """Statements that ran outside any scope and left no record (the process-wide
        scope only: ``sqlwatch._pipeline.Counted``)."""
        with self._lock:
            self._aggregator.add_counted(info, durations, sites)
            self._dropped += len(durations)

    def renew_lock(self) -> None:
        """In a child process just forked: a lock held by another thread of the
        parent at the fork would stay held here for good."""
        self._lock = threading.RLock()

    def _catch_up(self) -> None:
        """Process what capture has buffered, before the scope is read.

        Under the pipeline's lock: another thread may be processing a batch that
        holds this scope's statements (the buffer is shared, and whoever fills it
        takes everything). The buffer is empty then, and ``flush`` would return
        at once; the lock waits for that batch to land.
        """
        with PIPELINE.lock:
            PIPELINE.flush()
            if self.process_wide:
                PIPELINE.fold_all()

    def statement(self, execution: Execution) -> Statement:
        """The public record as this scope may show it: parameters only if this
        scope (or, process-wide, the statement's engine) asked for them."""
        if self.process_wide:
            keep = execution.tracker.capture_params
        else:
            keep = self.options.capture_params
        return to_statement(execution, with_params=keep)

    def watches(self, engine_id: int) -> bool:
        """Whether this engine's statements belong to the scope (``engines=``)."""
        return self.engine_ids is None or engine_id in self.engine_ids

    def exporters_for(self, tracker: Any) -> tuple[Any, ...]:
        """Who an ``emit`` for this engine's statement reaches: the process-wide
        scope tells each engine's own exporters, any other scope its own."""
        if self.process_wide and tracker is not None:
            return tracker.exporters  # type: ignore[no-any-return]
        return self.exporters

    def has_exporters(self, tracker: Any) -> bool:
        """Whether an ``emit`` reaches any exporter: a payload nobody receives
        need not be built."""
        return bool(self.exporters_for(tracker))

    def emit(self, hook: str, payload: Any, tracker: Any, source: Execution | None = None) -> None:
        """Queue an exporter call; made once the scope's lock is released.
        ``source``: the statement that completed the finding, if it is one."""
        if self._outbox is None:
            self._outbox = []
        elsewhere = source is not None and not PIPELINE.ran_here(source)
        self._outbox.append((hook, payload, tracker, elsewhere))

    def emit_now(self, hook: str, payload: Any, tracker: Any) -> None:
        """Call exporters at once (for callers that do not hold the lock)."""
        self._deliver([(hook, payload, tracker, False)])

    def _deliver(self, outbox: list[tuple[str, Any, Any, bool]]) -> None:
        if self.naming is not None:
            try:
                self.name = self.naming()
            except Exception as exc:
                report_internal_error("scope naming", exc)
        for hook, payload, tracker, elsewhere in outbox:
            token = finding_from_elsewhere.set(elsewhere) if elsewhere else None
            try:
                for exporter in self.exporters_for(tracker):
                    try:
                        getattr(exporter, hook)(payload, self.name)
                    except Exception as exc:
                        report_internal_error(f"exporter {type(exporter).__name__}.{hook}", exc)
            finally:
                if token is not None:
                    finding_from_elsewhere.reset(token)

    def add_child(self, report: Report | ScopeRun) -> None:
        with self._lock:
            self._children.add(report)

    def locked(self) -> threading.RLock:
        return self._lock

    # -- reading ------------------------------------------------------------

    @property
    def query_count(self) -> int:
        self._catch_up()
        return self._aggregator.query_count

    def totals(self) -> tuple[int, int]:
        """Statements so far and their total time in ns, without building a report
        (the middleware's ``Server-Timing`` header, on every response)."""
        self._catch_up()
        aggregator = self._aggregator
        return aggregator.query_count, aggregator.total_ns

    def executions(self) -> list[Execution]:
        self._catch_up()
        with self._lock:
            return list(self._kept)

    def snapshot(self) -> Report:
        self._catch_up()
        end = self.end_ns if self.end_ns is not None else perf_counter_ns()
        with self._lock:
            fields: dict[str, Any] = {
                "name": self.name,
                "started_at": epoch_ns_to_iso(perf_to_epoch_ns(self.start_ns)),
                "duration_ms": round((end - self.start_ns) / 1e6, 4),
                "statements": tuple(self.statement(e) for e in self._kept),
                "dropped_statements": self._dropped,
            }
            self._aggregator.contribute(fields)
            for detector in self.detectors:
                try:
                    detector.contribute(fields)
                except Exception as exc:
                    report_internal_error(f"detector {type(detector).__name__}.contribute", exc)
            if self._children.by_name:
                fields["scopes"] = self._children.summaries()
        if self._final_resources is not None:
            fields["resources"] = self._final_resources
        elif self._resources is not None:
            fields["resources"] = self._resources.snapshot(self.rss_peak)
        return Report(**fields)

    def close(self) -> None:
        """End the scope: nothing more is counted, and its end state is frozen.

        The report itself is built only when someone asks (``final_report``):
        most request and test scopes end unread, and building a report (every
        statement as a record, every fingerprint's percentiles) is most of what
        a scope costs.
        """
        with PIPELINE.lock:  # a batch in flight lands before the scope stops counting
            PIPELINE.flush()
            self.closed = True
        for detector in self.detectors:
            try:
                detector.close()
            except Exception as exc:
                report_internal_error(f"detector {type(detector).__name__}.close", exc)
        with self._lock:
            outbox, self._outbox = self._outbox, None
        if outbox:
            self._deliver(outbox)
        self.end_ns = perf_counter_ns()
        if self._resources is not None:
            self._final_resources = self._resources.snapshot(self.rss_peak)
        if self.exporters:
            report = self.final_report()
            for exporter in self.exporters:
                try:
                    exporter.on_scope_end(report)
                except Exception as exc:
                    report_internal_error(f"exporter {type(exporter).__name__}.on_scope_end", exc)

    def final_report(self) -> Report:
        """The closed scope's report, built once."""
        if self._final_report is None:
            self._final_report = self.snapshot()
        return self._final_report

    def run_summary(self) -> ScopeRun:
        """What an enclosing scope keeps of this one (``Report.scopes``), without
        building the whole report: counts, times and the N+1 findings."""
        if self._final_report is not None:
            report = self._final_report
            return ScopeRun(
                report.name,
                report.query_count,
                report.total_query_ms,
                report.duration_ms,
                report.n_plus_one,
            )
        end = self.end_ns if self.end_ns is not None else perf_counter_ns()
        fields: dict[str, Any] = {}
        with self._lock:
            for detector in self.detectors:
                if detector.contributes_n_plus_one:
                    detector.contribute(fields)
            count, total_ns = self._aggregator.query_count, self._aggregator.total_ns
        return ScopeRun(
            self.name,
            count,
            round(total_ns / 1e6, 4),
            round((end - self.start_ns) / 1e6, 4),
            fields.get("n_plus_one", ()),
        )
