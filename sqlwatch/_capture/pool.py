"""Connection pools: checkouts, waits, holds, invalidations, timeouts and leaks.

``PoolEvents`` would be the obvious way in, but they are dear on the path every
request takes: a ``checkout`` listener sends ``_ConnectionFairy._checkout`` down
its slow path and each dispatch costs about 0.4 us, together 10% of an
``engine.connect()`` / ``close()`` cycle before sqlwatch has done anything. So
the two per-checkout hooks are instance attributes set on the pool, shadowing
its class's methods, and deleting them restores the pool exactly:

- ``pool.connect`` (public): where a caller asks for a connection. The wait is
  measured around it (no event says "about to wait"), and ``TimeoutError``
  (``QueuePool`` exhausted) surfaces there, so timeouts are counted exactly.
- ``pool._return_conn``: where the pool takes a connection record back, right
  after the ``checkin`` event (the one place every return goes through: close,
  invalidation, garbage collection). Where a future SQLAlchemy lacks it, the
  public ``checkin`` event does the same job, at its price.

``pool.recreate`` is wrapped as well, so the pool ``engine.dispose()`` puts in
place is tracked from its first checkout. Rare events (``connect``,
``invalidate``, ``soft_invalidate``, ``detach``) are public ``PoolEvents``
registered through ``tracker.listen``, so ``uninstrument`` removes them. Two
more private names are read, both present in SQLAlchemy 2.0 and 2.1: the proxy's
``_connection_record`` (the key a return is matched by) and the record's
``fairy_ref`` (SQLAlchemy's own weak reference to the proxy, reused rather than
making one per checkout).

A checkout is a short list (``START`` ... ``SLOW``): when, where (the caller's
code object and instruction offset, turned into a line only if it becomes a
leak), the weak reference (dead when the pool takes the record back: the
application dropped the connection without ``close()``), and the scopes it was
made in. Nothing here keeps a connection alive. With no scope open, neither a
checkout nor a return takes a lock: dict insertion and ``list.append`` are
atomic, and the raw durations are folded into histograms under the lock later.

Leaks are found without a background thread: ``long_held`` when the connection
comes back, on a checkout at most every 50 ms (``MAINTENANCE_NS``), and when
a report is taken; ``unreturned`` when a scope closes; ``garbage_collected``
when the pool takes back a record whose proxy is dead. Exporters hear of a leak
found inside a garbage-collector callback or while a report is built at the
engine's next checkout or scope close, never from inside the collector or a
scope's lock: queueing such a leak brings the next maintenance forward
(``next_tick = 0``), so the checkout path needs no check of its own.

A scope's figures are frozen when it closes (``close_scope``): a connection it
checked out and that comes back later, or a checkout made afterwards by a thread
or task that inherited its context, changes nothing in them.

A pool assigned to ``engine.pool`` by hand has no hook to announce it: it is
found, wrapped and described (``PoolInfo``) by ``refresh``, at every scope's
start and end and whenever a report is built.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from time import perf_counter_ns
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool, QueuePool, SingletonThreadPool
from sqlalchemy.pool.base import _ConnectionRecord

from sqlwatch._capture.call_sites import (
    CallSite,
    CallSiteFinder,
    classified_internal,
    format_call_site,
)
from sqlwatch._context import EMPTY_CHAIN, ScopeChain, current_chain
from sqlwatch._guard import report_internal_error
from sqlwatch._histogram import LogHistogram
from sqlwatch._rss import SAMPLER as RSS_SAMPLER
from sqlwatch.records import Leak, PoolStats

if TYPE_CHECKING:
    from sqlwatch._capture.engine import EngineTracker

__all__ = [
    "MAINTENANCE_NS",
    "PoolCounters",
    "PoolInfo",
    "PoolTracker",
    "attach_pool_tracker",
    "pool_tracker_of",
]

EXTENSION_KEY = "pool"
"""``tracker.extensions[EXTENSION_KEY]`` is the engine's ``PoolTracker``."""
SCOPE_KEY = "pools"
"""``scope.extensions[SCOPE_KEY]`` is the scope's ``Leaks`` detector (``counters_for``)."""

MAINTENANCE_NS = 50_000_000
"""At most this often a pool event also scans for ``long_held`` connections and
samples RSS: one integer comparison per event the rest of the time."""
FOLD_AT = 512
"""Wait and hold durations are appended raw and folded into their histograms in
bulk (a third of the cost of bucketing each one as it comes)."""
MAX_LEAKS = 1_000
"""Leak records kept per scope and engine; further ones are counted in
``leaks_dropped`` (and still reach the exporters)."""

_getframe = sys._getframe
_HAS_FAIRY_REF = hasattr(_ConnectionRecord, "fairy_ref")
_ENGINE_CONNECT: CodeType = Engine.connect.__code__
_TimeoutError = sa_exc.TimeoutError

# A checkout is a list, not an object: it is made on every checkout, and a list
# costs a third of a slotted instance. Its slots:
START = 0
"""``perf_counter_ns`` when the pool handed the connection over."""
SITE = 1
"""``(code, lasti)`` (fast path), a ``CallSite`` (generic walk), or ``None``."""
FAIRY = 2
"""Weak reference to the pool's proxy: dead when the application dropped it.
SQLAlchemy keeps one on the record (``fairy_ref``) for its own clean-up; sqlwatch
holds that same object rather than making another."""
COUNTERS = 3
"""The open scopes' ``PoolCounters`` it is counted in (the process's aside)."""
EARLIER = 4
"""A ``StaticPool`` lends its one connection to several callers at once and
takes it back once: the checkout it shares the record with."""
FLAGGED = 5
"""``(id(counters), kind)`` of the leaks already reported for it, or ``None``."""
SLOW = 6
"""Counted in a scope or sharing its record: returned by the slower path."""

Checkout = list[Any]


def _noop(_: object) -> None:
    """A weak reference with a callback is cleared before finalizers run, even in
    a reference cycle (without one, not since CPython gh-135552): SQLAlchemy's
    ``fairy_ref`` has one for that reason, and so does a reference of sqlwatch's."""


def resolve_site(site: tuple[Any, ...] | None) -> CallSite | None:
    """The ``CallSite`` of a checkout; the fast path's line is computed here."""
    if site is None:
        return None
    if isinstance(site[0], str):
        return site
    code, lasti = site
    line = code.co_firstlineno
    for start, end, number in code.co_lines():
        if start <= lasti < end:
            if number is not None:
                line = number
            break
    return code.co_filename, line, code.co_name


def _chain_of(entry: Checkout) -> Iterator[Checkout]:
    checkout: Checkout | None = entry
    while checkout is not None:
        yield checkout
        checkout = checkout[EARLIER]


class PoolInfo:
    """What the pool class says about itself: ``None`` where it has no such notion."""

    __slots__ = ("has_timeouts", "max_overflow", "pool_class", "size")

    def __init__(self, pool: Pool) -> None:
        self.pool_class = type(pool).__name__
        self.size: int | None = None
        self.max_overflow: int | None = None
        self.has_timeouts = False
        if isinstance(pool, QueuePool):  # AsyncAdaptedQueuePool too
            self.size = pool.size()
            overflow = getattr(pool, "_max_overflow", None)  # no public accessor
            self.max_overflow = overflow if isinstance(overflow, int) else None
            self.has_timeouts = True
        elif isinstance(pool, SingletonThreadPool):
            size = getattr(pool, "size", None)  # connections kept, one per thread
            self.size = size if isinstance(size, int) else None


class PoolCounters:
    """One engine's pool figures in one scope.

    Durations and peaks are appended raw to plain lists (``list.append`` is
    atomic, so the process-wide figures take no lock on the way in) and folded
    into histograms under the engine's lock, by taking the first ``n`` items:
    appends only ever add at the end, so none is lost. Checkouts and checkins are
    the histograms' counts (timed-out attempts have a wait, not a checkout).
    Everything else is guarded by the engine's tracker lock.
    """

    def __init__(self, name: str, info: PoolInfo, threshold_s: float, scope: Any) -> None:
        self.name = name
        self.info = info
        self.threshold_ns = int(threshold_s * 1e9)
        self.scope = scope
        self.closed = False
        self.checked_out = 0
        """Scope counters only: the process-wide figure is the tracker's count."""
        self.peak = 0
        self.connects = 0
        self.invalidations = 0
        self.timeouts = 0
        self.waits: list[int] = []
        self.holds: list[int] = []
        self.wait_histogram = LogHistogram()
        self.hold_histogram = LogHistogram()
        self.active: dict[int, Checkout] = {}
        """Checkouts made in this scope and still out, by ``id`` (scope counters only)."""
        self.leaks: list[Leak] = []
        self.leaks_dropped = 0

    def fold(self) -> None:
        """Lock held."""
        pairs = ((self.waits, self.wait_histogram), (self.holds, self.hold_histogram))
        for raw, histogram in pairs:
            n = len(raw)
            if n:
                chunk = raw[:n]
                del raw[:n]
                histogram.add_many(chunk)

    def add_leak(self, leak: Leak) -> None:
        if len(self.leaks) < MAX_LEAKS:
            self.leaks.append(leak)
        else:
            self.leaks_dropped += 1

    def stats(self, checked_out: int | None = None) -> PoolStats:
        """Lock held. ``checked_out``: the tracker's count, for the process-wide figures."""
        self.fold()
        info = self.info
        return PoolStats(
            engine=self.name,
            pool_class=info.pool_class,
            size=info.size,
            max_overflow=info.max_overflow,
            checked_out=self.checked_out if checked_out is None else checked_out,
            peak_checked_out=self.peak,
            checkouts=self.wait_histogram.count - self.timeouts,
            checkins=self.hold_histogram.count,
            connects=self.connects,
            invalidations=self.invalidations,
            timeouts=self.timeouts if info.has_timeouts else None,
            wait_ms=self.wait_histogram.percentiles_ms(),
            hold_ms=self.hold_histogram.percentiles_ms(),
        )


class PoolTracker:
    """The pool side of one instrumented engine."""

    def __init__(
        self, tracker: EngineTracker, engine: Engine, info: PoolInfo, process: PoolCounters
    ) -> None:
        self.tracker = tracker
        self.engine_id = tracker.engine_id
        self.name = tracker.name
        self.call_sites = tracker.options.capture_call_sites
        self.info = info
        self.process = process
        self.lock = threading.RLock()
        """Re-entrant: a proxy collected by the garbage collector inside a locked
        section returns its record through the wrapper, on the same thread."""
        self.outstanding: dict[Any, Checkout] = {}
        """Connection record -> its checkout, for every connection out of the pool."""
        self.pending: deque[tuple[Any, Leak]] = deque()
        """Leaks found where exporters may not run, as ``(scope, leak)``."""
        self.active = True
        self.next_tick = 0
        self._pools: list[weakref.ref[Pool]] = []
        self._live: weakref.ref[Pool] | None = None
        """The pool ``info`` describes: ``engine.pool`` when ``refresh`` last looked."""
        self._chain: tuple[ScopeChain | None, tuple[PoolCounters, ...]] = (None, ())
        _LIVE_TRACKERS.add(self)

    def forget_parent_process(self) -> None:
        """In a child process just forked: the connections out are the parent's
        (SQLAlchemy's recipe has the child ``dispose(close=False)`` its pools and
        leave them to the parent), and a lock another thread of the parent held
        at the fork would stay held here for good."""
        self.lock = threading.RLock()
        self.outstanding.clear()
        self.pending.clear()
        self._chain = (None, ())

    # -- attaching ----------------------------------------------------------

    def _events(self) -> tuple[tuple[str, Callable[..., None]], ...]:
        return (
            ("connect", self._on_connect),
            ("invalidate", self._on_invalidate),
            ("soft_invalidate", self._on_invalidate),
            ("detach", self._on_detach),
        )

    def attach(self, engine: Engine) -> None:
        for identifier, fn in self._events():
            self.tracker.listen(engine, identifier, fn)
        self._wrap(engine.pool)
        self._live = weakref.ref(engine.pool)

    def _wrap(self, pool: Pool) -> None:
        if "connect" in vars(pool):
            return  # wrapped already (or the application shadowed it: leave it be)
        pool.connect = self._connect_wrapper(pool.connect)  # type: ignore[method-assign]
        if callable(getattr(type(pool), "_return_conn", None)):
            wrapper = self._return_wrapper(pool._return_conn)
            pool._return_conn = wrapper  # type: ignore[method-assign,assignment]
        else:  # pragma: no cover - a SQLAlchemy without the private hook: the public event
            self.tracker.listen(pool, "checkin", self._on_checkin_event)
        recreate = pool.recreate

        def sqlwatch_recreate() -> Pool:
            new = recreate()
            try:
                if self.active:
                    self._wrap(new)
            except Exception as exc:
                report_internal_error("pool recreate", exc)
            return new

        pool.recreate = sqlwatch_recreate  # type: ignore[method-assign]
        self._pools = [ref for ref in self._pools if ref() is not None]
        self._pools.append(weakref.ref(pool))

    def detach(self) -> None:
        """Take the wrappers off every pool of the engine (the listeners come off
        with the tracker's registrations) and forget the connections still out."""
        self.active = False
        for ref in self._pools:
            pool = ref()
            if pool is not None:
                for name in ("connect", "_return_conn", "recreate"):
                    vars(pool).pop(name, None)
                self._unlisten(pool)
        self._pools = []
        with self.lock:
            entries = list(self.outstanding.values())
            self.outstanding.clear()
            for entry in entries:
                for checkout in _chain_of(entry):
                    for counters in checkout[COUNTERS]:
                        if counters.active.pop(id(checkout), None) is not None:
                            counters.checked_out -= 1

    def refresh(self) -> None:
        """Follow a pool assigned to ``engine.pool`` by hand: no hook announces one
        (``dispose`` is wrapped, an assignment cannot be), so this looks at a
        scope's start and end and when a report is built, and the figures then
        describe the pool in use. Its checkouts before that are not seen."""
        engine = self.tracker.engine_ref()
        if engine is None or not self.active:
            return
        pool = engine.pool
        live = self._live
        if live is not None and live() is pool:
            return
        with self.lock:  # two threads must not wrap the same pool twice
            live = self._live
            if not self.active or (live is not None and live() is pool):
                return
            if "connect" not in vars(pool):
                self._wrap(pool)
                self._listen(pool)
            self.info = self.process.info = PoolInfo(pool)
            self._live = weakref.ref(pool)

    def _listen(self, pool: Pool) -> None:
        """The rare events, on a pool that did not inherit them from the engine's
        (a pool made by hand has listeners of its own; ``recreate`` copies them).
        Not through ``tracker.listen``: that would keep the pool alive."""
        for identifier, fn in self._events():
            if not any(listener == fn for listener in getattr(pool.dispatch, identifier)):
                event.listen(pool, identifier, fn)

    def _unlisten(self, pool: Pool) -> None:
        for identifier, fn in self._events():
            try:
                if event.contains(pool, identifier, fn):
                    event.remove(pool, identifier, fn)
            except Exception as exc:
                report_internal_error("uninstrument", exc)

    # -- the per-checkout path ------------------------------------------------
    # Two closures with everything they need bound locally: this is the one
    # place where a function call or an attribute lookup is a visible share of
    # what sqlwatch adds to a checkout. The usual case (no scope open, nothing
    # shared, no leak) stays inline; everything else is a method call away.

    def _connect_wrapper(self, connect: Callable[[], Any]) -> Callable[[], Any]:
        outstanding = self.outstanding
        insert = outstanding.setdefault
        process = self.process
        append_wait = process.waits.append
        get_chain = current_chain.get
        empty_chain = EMPTY_CHAIN
        holds = process.holds
        new_ref = weakref.ref
        # SQLAlchemy 2.0 and 2.1 set ``record.fairy_ref`` to the proxy they return.
        has_fairy_ref = _HAS_FAIRY_REF
        call_sites = self.call_sites
        known_internal = classified_internal
        timed_out = self._timed_out
        checkout_shared = self._checkout_shared
        checkout_scoped = self._checkout_scoped
        maintain = self._maintain
        fold_process = self._fold_process
        sites = CallSiteFinder()

        def sqlwatch_connect() -> Any:
            start = perf_counter_ns()
            try:
                fairy = connect()
            except _TimeoutError:
                timed_out(start)
                raise
            now = perf_counter_ns()
            try:
                chain = get_chain()
                in_scope = chain is not empty_chain
                site: tuple[Any, ...] | None = None
                if call_sites or (in_scope and chain.call_sites):
                    # engine.connect() has a fixed stack: raw_connection (1),
                    # Connection.__init__ (2), Engine.connect (3), the caller (4).
                    # Seeing Engine.connect at depth 3 proves it, and only two
                    # frames are materialized; the caller's line is computed
                    # from its instruction offset only if this becomes a leak.
                    try:
                        frame: FrameType | None = _getframe(3)
                    except ValueError:  # pool.connect() near the top of a thread
                        frame = None
                    caller = None
                    if frame is not None and frame.f_code is _ENGINE_CONNECT:
                        caller = frame.f_back
                    if caller is not None and known_internal(caller.f_code.co_filename) is False:
                        site = (caller.f_code, caller.f_lasti)
                    else:  # a Session's checkout, raw_connection(), an async engine:
                        site = sites.find(2)  # the walk, which learns their exits
                record = fairy._connection_record
                ref = record.fairy_ref if has_fairy_ref else new_ref(fairy, _noop)
                entry: Checkout = [now, site, ref, (), None, None, False]
                # No lock: inserting and appending are atomic; the raw figures are
                # folded in under the lock later.
                shared = 0
                if insert(record, entry) is not entry:
                    shared = checkout_shared(record, entry, fairy)
                append_wait(now - start)
                if len(outstanding) + shared > process.peak:
                    self._raise_peak(len(outstanding) + shared)
                if in_scope and chain.scopes:
                    checkout_scoped(entry, chain, now - start)
                if now >= self.next_tick:
                    maintain(now)
                elif len(holds) >= FOLD_AT:
                    fold_process()
            except _Nested:
                pass
            except Exception as exc:
                report_internal_error("pool checkout", exc)
            return fairy

        return sqlwatch_connect

    def _return_wrapper(self, return_conn: Callable[[Any], None]) -> Callable[[Any], None]:
        pop = self.outstanding.pop
        holds = self.process.holds
        append_hold = holds.append
        threshold_ns = self.process.threshold_ns
        returned = self._returned

        def sqlwatch_return_conn(record: Any) -> None:
            now = perf_counter_ns()
            try:
                entry = pop(record, None)
                if entry is not None:
                    if entry[SLOW]:
                        returned(entry, now, counted=False)
                    else:  # the usual case: no scope, nothing shared, no lock
                        held = now - entry[START]
                        append_hold(held)
                        if entry[FAIRY]() is None or held >= threshold_ns:
                            returned(entry, now, counted=True)
            except Exception as exc:
                report_internal_error("pool checkin", exc)
            return_conn(record)

        return sqlwatch_return_conn

    def _raise_peak(self, seen: int) -> None:
        """A checkout saw more connections out than the peak so far. ``seen`` is a
        real count (read right after the insert, without a lock): a return racing
        in between can make it read lower, never higher. So the peak is exact
        unless returns and checkouts interleave at that very instruction, and is
        never above the true peak."""
        with self.lock:
            if seen > self.process.peak:
                self.process.peak = seen

    def _checkout_shared(self, record: Any, entry: Checkout, fairy: Any) -> int:
        """The record is out already: the same proxy lent again
        (``SingletonThreadPool``: not a new checkout), or a ``StaticPool`` sharing
        its one connection (a new checkout, returned with the first). Returns how
        many more checkouts share the record."""
        with self.lock:
            previous = self.outstanding.get(record)
            if previous is None:
                self.outstanding[record] = entry
                return 0
            if previous[FAIRY]() is fairy:
                raise _Nested
            entry[EARLIER] = previous
            entry[SLOW] = True
            self.outstanding[record] = entry
            return sum(1 for _ in _chain_of(previous))

    def _checkout_scoped(self, entry: Checkout, chain: ScopeChain, wait: int) -> None:
        scoped = self.scope_counters(chain)
        if not scoped:
            return
        key = id(entry)
        with self.lock:
            for counters in scoped:
                if counters.closed:
                    # A thread or task that outlived its scope: a closed scope
                    # counts nothing more (the cache may predate the close).
                    scoped = tuple(open_ for open_ in scoped if not open_.closed)
                    if not scoped:
                        return
                    break
            entry[COUNTERS] = scoped
            entry[SLOW] = True
            for counters in scoped:
                counters.checked_out += 1
                if counters.checked_out > counters.peak:
                    counters.peak = counters.checked_out
                counters.waits.append(wait)
                counters.active[key] = entry

    def _returned(self, entry: Checkout, now: int, *, counted: bool) -> None:
        """Everything but the plain return: scopes, shared records, leaks, upkeep.

        ``counted``: the hold is recorded already (the usual path)."""
        process = self.process
        with self.lock:
            if not counted:
                checkout: Checkout | None = entry
                while checkout is not None:
                    held = now - checkout[START]
                    process.holds.append(held)
                    for counters in checkout[COUNTERS]:
                        if counters.active.pop(id(checkout), None) is None:
                            continue  # frozen at the scope's close, or forgotten at uninstrument
                        counters.checked_out -= 1
                        counters.holds.append(held)
                        if len(counters.holds) >= FOLD_AT:
                            counters.fold()
                    checkout = checkout[EARLIER]
            if len(process.holds) >= FOLD_AT:
                process.fold()
        collected = False
        checkout = entry
        while checkout is not None:
            held = now - checkout[START]
            if checkout[FAIRY]() is None:
                # The proxy is gone: the pool is cleaning up after the garbage
                # collector. Exporters hear of it later, not from inside the collector.
                self._leak(checkout, "garbage_collected", held, defer=True)
                collected = True
            elif held >= process.threshold_ns or (
                checkout[COUNTERS] and held >= self._lowest_threshold(checkout)
            ):
                self._leak(checkout, "long_held", held, defer=False)
            checkout = checkout[EARLIER]
        if not collected and now >= self.next_tick:
            self._maintain(now)

    # -- scopes -----------------------------------------------------------------

    def scope_counters(self, chain: ScopeChain) -> tuple[PoolCounters, ...]:
        """The figures of the chain's open scopes that watch this engine (the
        caller drops any that closed since: ``close_scope`` clears the cache, but
        a thread may have been filling it at that moment)."""
        cached_chain, cached = self._chain
        if cached_chain is chain:
            return cached
        found = []
        for scope in chain.scopes:
            if scope.closed or not scope.watches(self.engine_id):
                continue
            owner = scope.extensions.get(SCOPE_KEY)
            if owner is not None:
                found.append(owner.counters_for(self))
        result = tuple(found)
        self._chain = (chain, result)
        return result

    # -- leaks ------------------------------------------------------------------

    def _lowest_threshold(self, checkout: Checkout) -> int:
        lowest = self.process.threshold_ns
        for counters in checkout[COUNTERS]:
            if counters.threshold_ns < lowest:
                lowest = counters.threshold_ns
        return lowest

    def _leak(
        self,
        checkout: Checkout,
        kind: str,
        held_ns: int,
        *,
        defer: bool,
        scope_counters: PoolCounters | None = None,
    ) -> None:
        """Record one leak in every scope it concerns (once per scope and kind).

        ``scope_counters``: the scope closing (closed already, so that nothing
        else changes its figures) that finds the connection unreturned.
        ``defer``: exporters may not be called here; the next checkout or scope
        close tells them."""
        if scope_counters is not None:
            targets: tuple[PoolCounters, ...] = (scope_counters, self.process)
        else:
            targets = (self.process, *checkout[COUNTERS])
        leak: Leak | None = None
        for counters in targets:
            if counters.closed and counters is not scope_counters:
                continue
            if kind == "long_held" and held_ns < counters.threshold_ns:
                continue
            with self.lock:
                flagged = checkout[FLAGGED]
                if flagged is None:
                    flagged = checkout[FLAGGED] = set()
                key = (id(counters), kind)
                if key in flagged:
                    continue
                flagged.add(key)
            if leak is None:
                leak = Leak(
                    engine=self.name,
                    kind=kind,
                    held_ms=round(held_ns / 1e6, 3),
                    call_site=format_call_site(resolve_site(checkout[SITE])),
                )
            with self.lock:
                counters.add_leak(leak)
            if defer:
                self.pending.append((counters.scope, leak))
                # The next checkout maintains, and so delivers it: the checkout
                # path compares with ``next_tick`` anyway.
                self.next_tick = 0
            else:
                self._emit(counters.scope, leak)

    def _emit(self, scope: Any, leak: Leak) -> None:
        if scope is None:
            return
        try:
            scope.emit_now("on_leak", leak, self.tracker)
        except Exception as exc:
            report_internal_error("leak export", exc)

    def drain(self) -> None:
        """Tell the exporters of leaks found where they could not be called."""
        pending = self.pending
        while pending:
            try:
                scope, leak = pending.popleft()
            except IndexError:
                break
            self._emit(scope, leak)

    def _fold_process(self) -> None:
        with self.lock:
            self.process.fold()

    def _maintain(self, now: int) -> None:
        self.next_tick = now + MAINTENANCE_NS
        if len(self.process.holds) >= FOLD_AT:
            self._fold_process()
        if self.pending:
            self.drain()
        self.scan(now, defer=False)
        RSS_SAMPLER.maybe_sample(now)

    def scan(self, now: int, *, defer: bool) -> None:
        """``long_held``: connections out longer than a threshold that applies to them."""
        with self.lock:
            candidates = [
                checkout
                for entry in list(self.outstanding.values())  # one C call: atomic
                for checkout in _chain_of(entry)
                if now - checkout[START] >= self._lowest_threshold(checkout)
            ]
        for checkout in candidates:
            self._leak(checkout, "long_held", now - checkout[START], defer=defer)

    def close_scope(self, counters: PoolCounters) -> None:
        """A scope ends: its figures are frozen as they are now (its report is
        built when first read, maybe after its connections came back), and its
        connections still out are ``unreturned`` leaks."""
        now = perf_counter_ns()
        self.drain()
        self.refresh()
        with self.lock:
            remaining = list(counters.active.values())
            counters.active.clear()  # their return changes nothing here
            counters.info = self.info
            counters.closed = True
        self._chain = (None, ())
        for checkout in remaining:
            self._leak(
                checkout,
                "unreturned",
                now - checkout[START],
                defer=False,
                scope_counters=counters,
            )

    def snapshot(self, counters: PoolCounters, *, scan: bool) -> tuple[PoolStats, list[Leak]]:
        """The figures for a report (a scope's lock may be held: nothing is exported)."""
        if not counters.closed:
            self.refresh()
            if scan and self.active:
                self.scan(perf_counter_ns(), defer=True)
        with self.lock:
            if not counters.closed:
                counters.info = self.info  # the pool in use now
            if counters is self.process:
                return counters.stats(self.checked_out()), list(counters.leaks)
            return counters.stats(), list(counters.leaks)

    def checked_out(self) -> int:
        """Connections out of the pool now, as far as sqlwatch saw them go
        (``process.checked_out`` is not kept: checkouts take no lock)."""
        return sum(1 for entry in list(self.outstanding.values()) for _ in _chain_of(entry))

    # -- rarer events -----------------------------------------------------------

    def _timed_out(self, start: int) -> None:
        now = perf_counter_ns()
        try:
            self._count("timeouts", wait=now - start)
        except Exception as exc:
            report_internal_error("pool timeout", exc)

    def _count(self, field: str, wait: int | None = None) -> None:
        chain = current_chain.get()
        scoped = self.scope_counters(chain) if chain.scopes else ()
        with self.lock:
            for counters in (self.process, *scoped):
                if counters.closed:
                    continue  # a thread or task that outlived its scope
                setattr(counters, field, getattr(counters, field) + 1)
                if wait is not None:
                    counters.waits.append(wait)
                    # Nothing else folds waits without holds: an exhausted pool
                    # times out for as long as the application keeps asking.
                    if len(counters.waits) >= FOLD_AT:
                        counters.fold()

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        try:
            if self.active:
                self._count("connects")
        except Exception as exc:
            report_internal_error("pool connect event", exc)

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        try:
            if self.active:
                self._count("invalidations")
        except Exception as exc:
            report_internal_error("pool invalidate event", exc)

    def _on_detach(self, dbapi_connection: Any, record: Any) -> None:
        """A detached connection leaves the pool for good: it counts as returned.

        With an async driver the pool cannot clean up after a collected proxy
        (that would need IO outside the event loop): it detaches the record
        instead, so this is where those ``garbage_collected`` leaks surface.
        """
        if self.active:
            self._checkin_slow(record)

    def _on_checkin_event(self, dbapi_connection: Any, record: Any) -> None:
        if self.active:
            self._checkin_slow(record)

    def _checkin_slow(self, record: Any) -> None:
        now = perf_counter_ns()
        try:
            with self.lock:
                entry = self.outstanding.pop(record, None)
            if entry is not None:
                self._returned(entry, now, counted=False)
        except Exception as exc:
            report_internal_error("pool checkin", exc)


_LIVE_TRACKERS: weakref.WeakSet[PoolTracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracker in list(_LIVE_TRACKERS):
        try:
            tracker.forget_parent_process()
        except Exception as exc:
            report_internal_error("pool tracking after fork", exc)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Nested(Exception):
    """The same proxy lent again by ``SingletonThreadPool``: not a new checkout."""


def pool_tracker_of(tracker: EngineTracker) -> PoolTracker | None:
    found = tracker.extensions.get(EXTENSION_KEY)
    return found if isinstance(found, PoolTracker) else None


def attach_pool_tracker(tracker: EngineTracker, engine: Engine) -> None:
    """``ENGINE_EXTENSIONS`` entry: follow the engine's pool from now on.

    The process-wide figures live in the process scope's ``Leaks`` detector,
    by engine name, so they survive ``uninstrument`` (the process report is
    cumulative since the first ``instrument()``) and go with ``reset()``.
    """
    from sqlwatch._pipeline import PIPELINE

    info = PoolInfo(engine.pool)
    threshold_s = tracker.options.leak_threshold_s
    process_scope = PIPELINE.process_scope
    owner = process_scope.extensions.get(SCOPE_KEY) if process_scope is not None else None
    if owner is not None:
        process = owner.adopt(tracker.name, info, threshold_s)
    else:
        process = PoolCounters(tracker.name, info, threshold_s, None)
    pool_tracker = PoolTracker(tracker, engine, info, process)
    if owner is not None:
        owner.register(pool_tracker, process)
    tracker.extensions[EXTENSION_KEY] = pool_tracker
    pool_tracker.attach(engine)
    tracker.on_detach(pool_tracker.detach)
