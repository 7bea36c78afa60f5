"""``instrument()`` and ``uninstrument()``: put sqlwatch on an engine, and take it off.

Listeners are installed once per engine and left in place; what is counted is
decided per statement by the open scopes (SQLAlchemy warns that listeners
added after a connection exists are not always seen by it, so attaching per
test or per request would miss statements).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.engine.base import OptionEngineMixin

from sqlwatch._capture.engine import EngineTracker, engine_name
from sqlwatch._capture.pool import attach_pool_tracker, pool_tracker_of
from sqlwatch._guard import report_internal_error
from sqlwatch._state import STATE, export_statement
from sqlwatch.config import Options
from sqlwatch.exporters import resolve_exporters
from sqlwatch.report import Report
from sqlwatch.scope import Scope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "ENGINE_EXTENSIONS",
    "Instrumentation",
    "instrument",
    "process_report",
    "reset",
    "uninstrument",
]

PROCESS_DEFAULTS: dict[str, Any] = {
    "exporters": ("logging",),
    "detect_unused_eager_loads": False,
}

ENGINE_EXTENSIONS: list[Callable[[EngineTracker, Engine], None]] = [attach_pool_tracker]
"""Called with each new tracker: components that listen to more than statements
(the pool tracker) attach here, through ``tracker.listen`` so they come off too."""


class Instrumentation:
    """The handle ``instrument()`` returns: one engine, watched by sqlwatch."""

    def __init__(self, tracker: EngineTracker, engine: Engine | AsyncEngine) -> None:
        self._tracker = tracker
        self.engine = engine
        """The engine given to ``instrument()`` (sync or async)."""

    @property
    def name(self) -> str:
        return self._tracker.name

    @property
    def options(self) -> Options:
        return self._tracker.options

    def report(self) -> Report:
        """The process-wide report (all instrumented engines)."""
        return process_report()

    def uninstrument(self) -> None:
        """Uninstrument the engine, unless it was uninstrumented and instrumented
        again since: that newer instrumentation has its own handle."""
        with STATE.lock:
            if _handles.get(self._tracker.engine_id) is self:
                uninstrument(self.engine)

    def __repr__(self) -> str:
        return f"<sqlwatch.Instrumentation {self.name!r}>"


def _sync_engine(engine: object) -> Engine:
    """The engine whose dialect and pool run the statements of ``engine``.

    An engine made by ``engine.execution_options(...)`` shares its parent's
    dialect and pool, where sqlwatch's listeners sit: it is the parent engine
    for sqlwatch, so that instrumenting both counts nothing twice.
    """
    if not isinstance(engine, Engine):
        sync_engine = getattr(engine, "sync_engine", None)  # an AsyncEngine
        if not isinstance(sync_engine, Engine):
            raise TypeError(
                "sqlwatch.instrument() needs a SQLAlchemy Engine or AsyncEngine, "
                f"got {type(engine).__name__}"
            )
        engine = sync_engine
    while isinstance(engine, OptionEngineMixin):
        engine = engine._proxied
    return engine


_handles: weakref.WeakValueDictionary[int, Instrumentation] = weakref.WeakValueDictionary()
"""The handle of each instrumented engine, while the application holds it: a
second ``instrument()`` returns the same one. Weak, as sqlwatch holds nothing
that keeps an engine alive: an engine made per tenant or per job and dropped
is freed, and its tracker forgotten at the next ``instrument()`` or report."""


def _tracker_of(sync_engine: Engine) -> EngineTracker | None:
    """The engine's tracker. Keyed by ``id``: the tracker of a dropped engine whose
    ``id`` a new engine took is not that engine's."""
    tracker = STATE.trackers.get(id(sync_engine))
    if tracker is None or tracker.engine_ref() is not sync_engine:
        return None
    return tracker


def _forget_dropped_engines() -> None:
    """Detach the trackers of engines the application dropped (lock held)."""
    for engine_id, tracker in list(STATE.trackers.items()):
        if tracker.engine_ref() is None:
            del STATE.trackers[engine_id]
            try:
                tracker.detach()
            except Exception as exc:
                report_internal_error("forgetting a dropped engine", exc)


def instrument(
    engine: Engine | AsyncEngine, *, name: str | None = None, **options: Any
) -> Instrumentation:
    """Watch every statement of ``engine``. A second call returns the same handle."""
    sync_engine = _sync_engine(engine)
    parsed = Options.from_kwargs(options, **PROCESS_DEFAULTS)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"instrument(name=...) must be a string, got {name!r}")
    with STATE.lock:
        _forget_dropped_engines()
        current = _tracker_of(sync_engine)
        if current is not None:
            handle = _handles.get(id(sync_engine))
            if handle is None or handle._tracker is not current:
                handle = _handles[id(sync_engine)] = Instrumentation(current, engine)
            _warn_if_ignored(handle, parsed, options, name)
            return handle
        exporters = resolve_exporters(parsed.exporters)
        tracker = EngineTracker(
            sync_engine,
            name=_unique_name(name or engine_name(sync_engine)),
            options=parsed,
            pipeline=STATE.pipeline,
            export_statement=export_statement,
        )
        tracker.exporters = exporters
        if STATE.pipeline.process_scope is None:
            STATE.pipeline.process_scope = Scope(
                "process", parsed.replace(exporters=()), process_wide=True
            )
        try:
            tracker.attach()
            for extension in ENGINE_EXTENSIONS:
                extension(tracker, sync_engine)
        except BaseException:
            tracker.detach()  # nothing half-attached left behind, out of uninstrument()'s reach
            raise
        STATE.trackers[id(sync_engine)] = tracker
        STATE.sessions.install()
        handle = _handles[id(sync_engine)] = Instrumentation(tracker, engine)
        return handle


def _warn_if_ignored(
    handle: Instrumentation, parsed: Options, given: dict[str, Any], name: str | None
) -> None:
    """A second ``instrument()`` keeps the first call's options; say so when this
    call asked for others. The usual way in: ``watch(engines=[engine])`` or an
    assertion instrumented the engine first (without exporters), and the
    application's own ``instrument(engine)`` would otherwise silently log nothing."""
    current = handle.options
    ignored = sorted(key for key in given if getattr(parsed, key) != getattr(current, key))
    if name is not None and name != handle.name:
        ignored.insert(0, "name")
    if ignored:
        logging.getLogger("sqlwatch").warning(
            "sqlwatch: %s is instrumented already; instrument() keeps the options it "
            "was first instrumented with and ignores these: %s (uninstrument() it "
            "first to change them)",
            handle.name,
            ", ".join(ignored),
        )


def _unique_name(base: str) -> str:
    taken = {t.name for t in STATE.trackers.values()}
    if base not in taken:
        return base
    n = 2
    while f"{base}#{n}" in taken:
        n += 1
    return f"{base}#{n}"


def uninstrument(engine: Engine | AsyncEngine) -> None:
    """Remove every listener sqlwatch added to ``engine`` and its pool."""
    sync_engine = _sync_engine(engine)
    with STATE.lock:
        _forget_dropped_engines()
        tracker = _tracker_of(sync_engine)
        if tracker is not None:
            del STATE.trackers[id(sync_engine)]
            _handles.pop(id(sync_engine), None)
            tracker.detach()
        if not STATE.trackers:
            STATE.orm.remove()
            STATE.sessions.remove()


def tracker_for(engine: Engine | AsyncEngine) -> EngineTracker | None:
    return _tracker_of(_sync_engine(engine))


def process_report() -> Report:
    """The process-wide report (empty before the first ``instrument()``)."""
    scope = STATE.pipeline.process_scope
    if scope is None:
        return Report()
    with STATE.lock:
        _forget_dropped_engines()
    _deliver_pending_leaks()
    return scope.snapshot()


def _deliver_pending_leaks() -> None:
    """Tell the exporters of leaks found where they could not run (a connection
    the garbage collector took) or due now, before the report lists them: the
    report is built under locks where no exporter may be called."""
    now = perf_counter_ns()
    for tracker in list(STATE.trackers.values()):
        pools = pool_tracker_of(tracker)
        if pools is None:
            continue
        try:
            pools.drain()
            pools.scan(now, defer=False)
        except Exception as exc:
            report_internal_error("leak delivery", exc)


def reset() -> None:
    """Uninstrument every engine and forget everything sqlwatch has seen."""
    from sqlwatch._analysis import clear_caches
    from sqlwatch.exporters import reset_shared_exporters

    with STATE.lock:
        for engine_id in list(STATE.trackers):
            tracker = STATE.trackers.pop(engine_id)
            tracker.detach()
        _handles.clear()
        STATE.orm.remove()
        STATE.sessions.remove()
        STATE.pipeline.clear()
    clear_caches()
    reset_shared_exporters()
    _forget_module_caches()


def _forget_module_caches() -> None:
    """The small caches of the hot paths, which hold the application's code
    objects, mapped classes, exception classes and routes: after ``reset()`` they
    keep nothing alive. (Not imported here if the application never used them.)"""
    import sys

    from sqlwatch import _guard
    from sqlwatch._capture import call_sites, orm

    caches: list[dict[Any, Any]] = [
        _guard._last_logged,
        call_sites._sites_at,
        call_sites._formatted,
        orm._relationships,
    ]
    for module_name, attribute in (
        ("sqlwatch.exporters.otel", "_error_attributes"),
        ("sqlwatch.integrations.asgi", "_templates"),
        ("sqlwatch.integrations.wsgi", "_templates"),
    ):
        module = sys.modules.get(module_name)
        if module is not None:
            caches.append(getattr(module, attribute))
    for cache in caches:
        cache.clear()
    from sqlwatch.detectors import n_plus_one

    for keyed_by_class in (
        n_plus_one._mapped_tables,
        n_plus_one._reloads_identity,
        n_plus_one._subclass_table_load,
    ):
        keyed_by_class.cache_clear()
