"""Connection pools and leaks, per scope.

The pool tracker (``sqlwatch._capture.pool``) counts each checkout in the
process-wide figures and in every scope open in the context that made it; this
detector owns a scope's figures (``counters_for``) and turns them into the
report's ``pools`` and ``leaks``. It has no interest in statements.

In a ``watch()`` (or a test, or a request) the pool figures are those of the
checkouts made inside it: how many connections the block took, how long it
waited and held them, its own peak of simultaneous connections. Concurrent
scopes never see each other's checkouts, as for statements. When the scope
closes, its checkouts still out are ``unreturned`` leaks, reported to the
scope and (once per checkout) to the process-wide report, and its figures are
frozen: a thread or task that outlives the scope adds nothing to them.

A scope's start looks for pools assigned to ``engine.pool`` by hand
(``PoolTracker.refresh``), so that the scope counts their checkouts.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sqlwatch._capture.pool import SCOPE_KEY, PoolCounters, PoolInfo, PoolTracker
from sqlwatch._guard import report_internal_error
from sqlwatch._pipeline import PIPELINE
from sqlwatch.detectors.base import Detector
from sqlwatch.records import Leak

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["Leaks"]


class Leaks(Detector):
    per_statement = False

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        # Re-entrant: a garbage collection inside a locked section may return a
        # dropped connection, whose pool events come back here on the same thread.
        self._lock = threading.RLock()
        self._by_engine: dict[int, tuple[PoolTracker, PoolCounters]] = {}
        """Scopes: engine id -> (tracker, counters), created at the first checkout."""
        self._by_name: dict[str, tuple[PoolTracker | None, PoolCounters]] = {}
        """The process scope: engine name -> (current tracker, counters), from
        ``instrument()`` on, kept across ``uninstrument``."""
        scope.extensions[SCOPE_KEY] = self
        process_scope = PIPELINE.process_scope
        if process_scope is not None and process_scope is not scope:
            process = process_scope.extensions.get(SCOPE_KEY)
            if isinstance(process, Leaks):
                try:
                    process.refresh_pools(scope)
                except Exception as exc:  # in the application's watch(): never raise
                    report_internal_error("pool refresh", exc)

    def refresh_pools(self, scope: Scope) -> None:
        """The process scope's: follow the pools assigned by hand to the engines
        ``scope`` watches, before it counts their checkouts."""
        with self._lock:
            trackers = [tracker for tracker, _ in self._by_name.values() if tracker is not None]
        for tracker in trackers:
            if scope.watches(tracker.engine_id):
                tracker.refresh()

    # -- the pool tracker's side ----------------------------------------------

    def counters_for(self, tracker: PoolTracker) -> PoolCounters:
        """This scope's figures for one engine (any thread)."""
        found = self._by_engine.get(tracker.engine_id)
        if found is not None and found[0] is tracker:
            return found[1]
        with self._lock:
            found = self._by_engine.get(tracker.engine_id)
            if found is None or found[0] is not tracker:
                counters = PoolCounters(
                    tracker.name, tracker.info, self.scope.options.leak_threshold_s, self.scope
                )
                if self.scope.closed:  # a thread or task that outlived the scope
                    counters.closed = True
                    return counters
                found = self._by_engine[tracker.engine_id] = (tracker, counters)
            return found[1]

    def adopt(self, name: str, info: PoolInfo, threshold_s: float) -> PoolCounters:
        """The process-wide figures of an engine being instrumented (again)."""
        with self._lock:
            found = self._by_name.get(name)
            if found is not None:
                counters = found[1]
                counters.info = info
                counters.threshold_ns = int(threshold_s * 1e9)
                return counters
            counters = PoolCounters(name, info, threshold_s, self.scope)
            self._by_name[name] = (None, counters)
            return counters

    def register(self, tracker: PoolTracker, counters: PoolCounters) -> None:
        with self._lock:
            self._by_name[counters.name] = (tracker, counters)

    # -- the scope's side -------------------------------------------------------

    def _entries(self) -> list[tuple[PoolTracker | None, PoolCounters]]:
        with self._lock:
            return [*self._by_name.values(), *self._by_engine.values()]

    def close(self) -> None:
        for tracker, counters in self._entries():
            if tracker is not None:
                tracker.close_scope(counters)

    def contribute(self, fields: dict[str, Any]) -> None:
        pools = {}
        leaks: list[Leak] = []
        for tracker, counters in self._entries():
            if tracker is None:
                stats, found = counters.stats(), list(counters.leaks)
            else:
                stats, found = tracker.snapshot(counters, scan=True)
            pools[counters.name] = stats
            leaks.extend(found)
        if pools:
            fields["pools"] = pools
        if leaks:
            fields["leaks"] = tuple(leaks)
