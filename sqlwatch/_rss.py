"""Peak RSS of each open scope, sampled at statement boundaries.

Reading the resident set size from the OS costs microseconds (``current_rss``),
too dear for every statement. It is sampled at most once
every ``INTERVAL_NS`` (50 ms), when the statement pipeline processes a batch
and when a connection goes back to its pool; between samples the check is one
integer comparison. Each sample raises ``rss_peak`` of every scope open at that
moment (scopes register themselves while open). A scope's reported peak is
also never below its RSS at start and end, so a scope shorter than the
interval still has a meaningful figure; a spike that comes and goes between
two samples is not seen.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from time import perf_counter_ns
from typing import Any

from sqlwatch._guard import report_internal_error

__all__ = ["INTERVAL_NS", "SAMPLER", "RssSampler", "current_rss"]

INTERVAL_NS = 50_000_000


class _Statm:
    """``/proc/self/statm`` on Linux, read with one ``pread`` on a descriptor kept
    open: 1.4 µs, where psutil's ``memory_info()`` takes 11 (it opens, reads and
    parses the same file through a few layers of its own). A ``watch()`` reads
    RSS when it opens and when it closes, so a scope per request or per test pays
    this twice. The descriptor is reopened in a forked child (``/proc/self`` was
    resolved when it was opened)."""

    def __init__(self) -> None:
        self._fd = -1
        self._pid = 0
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def read(self) -> int:
        pid = os.getpid()
        if pid != self._pid:
            if self._fd >= 0:  # the parent's copy, inherited by this forked child
                os.close(self._fd)
            self._fd = os.open("/proc/self/statm", os.O_RDONLY)
            self._pid = pid
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page


class _Psutil:
    """Everywhere else. psutil loads on first use: importing sqlwatch stays light."""

    def __init__(self) -> None:
        self._process: Any = None

    def read(self) -> int:
        if self._process is None:
            import psutil

            self._process = psutil.Process()
        return int(self._process.memory_info().rss)


_reader: _Statm | _Psutil = _Statm() if sys.platform.startswith("linux") else _Psutil()


def current_rss() -> int:
    """This process's resident set size, in bytes."""
    global _reader
    try:
        return _reader.read()
    except (OSError, ValueError, IndexError):  # no /proc (a sandbox): psutil's way
        if isinstance(_reader, _Psutil):
            raise
        _reader = _Psutil()
        return _reader.read()


class RssSampler:
    def __init__(self) -> None:
        self.next_ns = 0
        self.samples = 0
        self._lock = threading.Lock()
        self._scopes: weakref.WeakSet[Any] = weakref.WeakSet()

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
        return current_rss()


SAMPLER = RssSampler()
