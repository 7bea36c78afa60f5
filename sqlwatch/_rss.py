"""Peak RSS of each open scope, sampled at statement boundaries.

psutil reads the resident set size from the OS (on Linux, ``/proc/self/statm``:
a few microseconds), too dear for every statement. It is sampled at most once
every ``INTERVAL_NS`` (50 ms), when the statement pipeline processes a batch
and when a connection goes back to its pool; between samples the check is one
integer comparison. Each sample raises ``rss_peak`` of every scope open at that
moment (scopes register themselves while open). A scope's reported peak is
also never below its RSS at start and end, so a scope shorter than the
interval still has a meaningful figure; a spike that comes and goes between
two samples is not seen.
"""

from __future__ import annotations

import threading
import weakref
from time import perf_counter_ns
from typing import Any

from sqlwatch._guard import report_internal_error

__all__ = ["INTERVAL_NS", "SAMPLER", "RssSampler"]

INTERVAL_NS = 50_000_000


class RssSampler:
    def __init__(self) -> None:
        self.next_ns = 0
        self.samples = 0
        self._lock = threading.Lock()
        self._scopes: weakref.WeakSet[Any] = weakref.WeakSet()
        self._process: Any = None

    def register(self, scope: Any) -> None:
        with self._lock:
            self._scopes.add(scope)

    def unregister(self, scope: Any) -> None:
        with self._lock:
            self._scopes.discard(scope)

    def maybe_sample(self, now_ns: int | None = None) -> None:
        """Sample if the last sample is older than the interval (any thread)."""
        if now_ns is None:
            now_ns = perf_counter_ns()
        if now_ns < self.next_ns:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is sampling right now
        try:
            self.next_ns = now_ns + INTERVAL_NS
            rss = self._rss()
            self.samples += 1
            for scope in list(self._scopes):
                if rss > scope.rss_peak:
                    scope.rss_peak = rss
        except Exception as exc:
            report_internal_error("RSS sampling", exc)
        finally:
            self._lock.release()

    def _rss(self) -> int:
        if self._process is None:
            import psutil  # loaded on first use: importing sqlwatch stays light

            self._process = psutil.Process()
        return int(self._process.memory_info().rss)


SAMPLER = RssSampler()
