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
        self._identity: tuple[int, int] | None = None
        """``(st_dev, st_ino)`` of the descriptor when it was opened."""
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def read(self) -> int:
        pid = os.getpid()
        if pid != self._pid:
            self._open(pid)
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page

    def _open(self, pid: int) -> None:
        """Open this process's file; in a forked child, then close the parent's
        descriptor, but only if it still is that file: a daemonizing child closes
        every descriptor it inherited and opens its own files, which take the same
        numbers, and closing by number alone would close one of the application's
        (its log file, a socket)."""
        inherited, identity = self._fd, self._identity
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        stat = os.fstat(fd)
        self._fd, self._identity, self._pid = fd, (stat.st_dev, stat.st_ino), pid
        if inherited < 0:
            return
        try:
            stat = os.fstat(inherited)
        except OSError:
            return  # closed already
        if (stat.st_dev, stat.st_ino) == identity:
            os.close(inherited)


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
    """This process's resident set size, in bytes; 0 where it cannot be read.

    Called where the application opens and closes a ``watch()`` (and at
    ``instrument()``): a failure here must not reach it. psutil may be refused
    too (``AccessDenied`` in a sandbox without /proc, a process out of file
    descriptors): the error is reported as sqlwatch's own, and the scope's
    ``resources`` say 0 bytes, as they do when resources are not tracked.
    """
    global _reader
    try:
        return _reader.read()
    except Exception as exc:
        if not isinstance(_reader, _Psutil) and isinstance(exc, (OSError, ValueError, IndexError)):
            _reader = _Psutil()  # no /proc (a sandbox): psutil's way from now on
            return current_rss()
        report_internal_error("reading RSS", exc)
        return 0


class RssSampler:
    """Scopes register while open; no call here ever waits for a lock.

    A signal handler or a finalizer (``__del__``, a weakref callback run by a
    garbage collection) may open a ``watch()`` in the middle of a sample, in the
    very thread that holds the sampling lock: registering must not take it. The
    scopes are a plain set of weak references (``set.add``, ``discard`` and
    ``list(set)`` are each one atomic call), and the lock only keeps two threads
    from sampling at once. A child forked while another thread sampled would
    inherit the lock held: it is made anew there.
    """

    def __init__(self) -> None:
        self.next_ns = 0
        self._lock = threading.Lock()
        self._scopes: set[weakref.ref[Any]] = set()
        """Weak references to the open scopes, each removed when its scope goes."""
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def register(self, scope: Any) -> None:
        self._scopes.add(weakref.ref(scope, self._scopes.discard))

    def unregister(self, scope: Any) -> None:
        self._scopes.discard(weakref.ref(scope))  # equal to the registered one while alive

    def maybe_sample(self, now_ns: int | None = None) -> None:
        """Sample if the last sample is older than the interval (any thread)."""
        if now_ns is None:
            now_ns = perf_counter_ns()
        if now_ns < self.next_ns:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is sampling right now (or this one, interrupted)
        try:
            self.next_ns = now_ns + INTERVAL_NS
            rss = self._rss()
            for ref in list(self._scopes):
                scope = ref()
                if scope is not None and rss > scope.rss_peak:
                    scope.rss_peak = rss
        except Exception as exc:
            report_internal_error("RSS sampling", exc)
        finally:
            self._lock.release()

    def _rss(self) -> int:
        return current_rss()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


SAMPLER = RssSampler()
