"""Unused eager loads: a relationship loaded up front that nothing read.

``joinedload`` / ``selectinload`` / ``subqueryload`` (or ``lazy="joined"`` and
friends on the mapping) cost a JOIN or an extra query; when no row's attribute
is read before the scope ends, that cost bought nothing.

What is eager-loaded:

- ``selectin`` / ``subquery``: their own statement, tagged ``eager_load`` (with
  its relationship property) by the statement listener (``sqlwatch._capture.orm``),
  reaches ``batch`` like any statement;
- ``joined``: no statement of its own, so an ``InstanceEvents.load`` listener (on
  ``Mapper``, for every class) looks at the first new object of each mapper in
  each query that a joined eager loader added a JOIN to (its compile state says
  so): a relationship already in its ``__dict__`` at ``load`` time, and joined
  by a loader of that query (not ``contains_eager``), was filled by that loader.
  The rows of every other query return after one dict lookup.

What is read: SQLAlchemy has no attribute-read event, and an attribute that is
loaded is returned straight from the instance's ``__dict__``. While a scope
that asks for this detector is open, each eager-loaded relationship's own
``InstrumentedAttribute`` (the very object in the class, the mapper and every
memoized collection: nothing is replaced) is switched to a subclass whose only
difference is that ``__get__`` notes the read; it is switched back when the last
such scope closes, and by ``sqlwatch.reset()``. Nothing is switched, and the
load listener returns after one integer test, while no such scope is open.

Not seen (documented in docs/n-plus-one.md): reads that bypass the class
attribute (``obj.__dict__["addresses"]``), which then look unread,
and reads in another thread or task than the scope's.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

from sqlwatch._capture.call_sites import CallSite, find_call_site, format_call_site
from sqlwatch._capture.execution import Execution
from sqlwatch._context import current_chain
from sqlwatch._guard import report_internal_error
from sqlwatch._pipeline import PIPELINE
from sqlwatch.detectors.base import Detector
from sqlwatch.records import UnusedEagerLoad

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["UnusedEagerLoads"]

EXTENSION = "unused_eager_loads"
"""Key of a detecting scope's ``_EagerLoads`` in ``Scope.extensions``."""
MAX_LOADS = 1024
_QUERY_KEY = "_sqlwatch_eager"
"""Per-query memo in ``QueryContext.attributes``: the mappers already looked at, and
the query's call site once a joined eager load needed it."""
_NOT_HERE: Any = ()
"""The memo of a query run where no detecting scope is open."""


class _EagerLoads:
    """One scope's eager loads (relationship, query call site) and the reads seen."""

    __slots__ = ("final", "loaded", "read")

    def __init__(self) -> None:
        self.loaded: dict[tuple[str, CallSite | None], int] = {}
        self.read: set[str] = set()
        """Relationships read in the scope; ``set.add`` is atomic, so the read hook
        needs no lock."""
        self.final: tuple[UnusedEagerLoad, ...] | None = None

    def loaded_by(self, name: str, site: CallSite | None) -> None:
        key = (name, site)
        loaded = self.loaded
        if key in loaded:
            loaded[key] += 1
        elif len(loaded) < MAX_LOADS:
            loaded[key] = 1

    def unused(self) -> tuple[UnusedEagerLoad, ...]:
        """Only relationships whose reads were watched: one that could not be is
        never reported, rather than reported wrongly."""
        if self.final is not None:
            return self.final
        read = self.read
        found = [
            UnusedEagerLoad(relationship=name, call_site=format_call_site(site), count=count)
            for (name, site), count in list(self.loaded.items())
            if name not in read and name in _watched_names
        ]
        found.sort(key=lambda u: (-u.count, u.relationship))
        return tuple(found)


# -- process-wide hook state ---------------------------------------------------

_lock = threading.RLock()
_detecting: set[_EagerLoads] = set()
"""The states of the open scopes that detect unused eager loads."""
_active = 0
"""``len(_detecting)``, read without the lock by the hooks' fast path."""
_listening = False
_watched: dict[int, tuple[Any, type]] = {}
"""id(InstrumentedAttribute) -> (the attribute, its own class), while switched."""
_names: dict[int, str] = {}
"""id(InstrumentedAttribute) -> ``"User.addresses"``."""
_watched_names: set[str] = set()


def _acquire(state: _EagerLoads) -> None:
    global _active, _listening
    with _lock:
        _detecting.add(state)
        _active = len(_detecting)
        if not _listening:
            from sqlalchemy import event
            from sqlalchemy.orm import Mapper

            from sqlwatch._state import STATE

            event.listen(Mapper, "load", _on_load, raw=True)
            STATE.orm.removers.append(_remove_hooks)
            _listening = True


def _release(state: _EagerLoads) -> None:
    global _active
    with _lock:
        _detecting.discard(state)
        _active = len(_detecting)
        if not _active:
            _unwatch_all()


def _remove_hooks() -> None:
    """Everything off: ``sqlwatch.reset()`` or the last ``uninstrument()``."""
    global _active, _listening
    with _lock:
        _detecting.clear()
        _active = 0
        _unwatch_all()
        if _listening:
            from sqlalchemy import event
            from sqlalchemy.orm import Mapper

            if event.contains(Mapper, "load", _on_load):
                event.remove(Mapper, "load", _on_load)
            _listening = False


def _unwatch_all() -> None:
    for attribute, own_class in _watched.values():
        attribute.__class__ = own_class
    _watched.clear()
    _names.clear()
    _watched_names.clear()


@functools.cache
def _watching_class(own_class: type) -> type:
    """The subclass an attribute is switched to: same slots, same behaviour, plus
    a note of each instance read. Its name is the original's, so reprs and error
    messages read the same."""
    base_get = own_class.__get__  # type: ignore[attr-defined]

    def __get__(self: Any, instance: Any, owner: Any = None) -> Any:
        if instance is not None and _active:
            _note_read(self)
        return base_get(self, instance, owner)

    # ``inherit_cache``: the attribute also builds SQL (``.join(User.addresses)``),
    # and SQLAlchemy caches a statement's compiled form only for element classes
    # that say their cache key is their base class's (it warns otherwise).
    return type(
        own_class.__name__,
        (own_class,),
        {"__slots__": (), "__get__": __get__, "__module__": __name__, "inherit_cache": True},
    )


def _watch(prop: Any) -> bool:
    """Switch the attribute of ``prop`` on its class and every mapped subclass."""
    name = f"{prop.parent.class_.__name__}.{prop.key}"
    with _lock:
        if not _active:
            return False
        for mapper in prop.parent.self_and_descendants:
            attribute = mapper.class_manager.get(prop.key)
            if attribute is None or id(attribute) in _watched:
                continue
            own_class = type(attribute)
            try:
                attribute.__class__ = _watching_class(own_class)  # type: ignore[arg-type]
            except TypeError:  # an attribute class with another layout: cannot watch it
                return False
            _watched[id(attribute)] = (attribute, own_class)
            _names[id(attribute)] = name
        _watched_names.add(name)
    return True


def _note_read(attribute: Any) -> None:
    try:
        name = _names.get(id(attribute))
        if name is None:
            return
        for scope in current_chain.get().scopes:
            state = scope.extensions.get(EXTENSION)
            if state is not None:
                state.read.add(name)
        process = PIPELINE.process_scope
        if process is not None:
            state = process.extensions.get(EXTENSION)
            if state is not None:
                state.read.add(name)
    except Exception as exc:
        report_internal_error("unused eager loads: read hook", exc)


def _states_here() -> list[_EagerLoads]:
    """The detecting scopes that see the current context's statements."""
    found = []
    for scope in current_chain.get().scopes:
        state = scope.extensions.get(EXTENSION)
        if state is not None:
            found.append(state)
    process = PIPELINE.process_scope
    if process is not None:
        state = process.extensions.get(EXTENSION)
        if state is not None:
            found.append(state)
    return found


def _on_load(state: Any, context: Any) -> None:
    """``InstanceEvents.load`` for every mapper: joined eager loads of each query."""
    if not _active or context is None:  # None: ``merge(load=False)``, no query behind it
        return
    try:
        memo = context.attributes.get(_QUERY_KEY)
        if memo is _NOT_HERE:
            return
        if memo is None and not getattr(context.compile_state, "eager_adding_joins", True):
            # No joined eager loader added a JOIN to this query: its rows are passed
            # with the one check above (most queries; ``contains_eager`` is the
            # application's own JOIN, not a loader's cost).
            context.attributes[_QUERY_KEY] = _NOT_HERE
            return
        mapper = state.mapper
        if memo is not None and mapper in memo[0]:
            return  # this mapper of this query is known already: the per-row cost
        states = _states_here()
        if not states:
            context.attributes[_QUERY_KEY] = _NOT_HERE
            return
        if memo is None:
            joined = _joined_by_loaders(context.attributes)
            if not joined:
                context.attributes[_QUERY_KEY] = _NOT_HERE
                return
            memo = context.attributes[_QUERY_KEY] = ({}, [], joined)
        seen, site_found, joined = memo
        seen[mapper] = None
        loaded = state.dict
        for prop in mapper.relationships:
            if prop.key not in loaded or prop not in joined:
                continue
            name = f"{prop.parent.class_.__name__}.{prop.key}"
            _watch(prop)
            if not site_found:  # walked once per query, and only for a joined eager load
                site_found.append(find_call_site())
            for target in states:
                target.loaded_by(name, site_found[0])
    except Exception as exc:
        report_internal_error("unused eager loads: load listener", exc)


def _joined_by_loaders(attributes: dict[Any, Any]) -> frozenset[Any]:
    """The relationships a joined eager loader added a JOIN for, in one query.

    A relationship in an object's ``__dict__`` at load time may have been filled
    by something else in the same query: ``contains_eager`` (the application's
    own JOIN, no loader's cost) or ``noload``. The joined loader keeps the row
    adapter of each JOIN it added under ``("eager_row_processor", path)`` in the
    query's attributes (``contains_eager`` under another key), the path ending
    with the relationship; read once per query.
    """
    return frozenset(
        key[1][-1]
        for key in list(attributes)
        if type(key) is tuple
        and len(key) == 2
        and type(key[0]) is str  # other keys hold SQL elements, whose == builds SQL
        and key[0] == "eager_row_processor"
        and type(key[1]) is tuple
        and key[1]
    )


class UnusedEagerLoads(Detector):
    """Reports eager-loaded relationships no row's attribute was read from."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self.state: _EagerLoads | None = None
        if not scope.options.detect_unused_eager_loads:
            self.per_statement = False  # costs nothing, not even a call per batch
            return
        self.state = _EagerLoads()
        scope.extensions[EXTENSION] = self.state
        _acquire(self.state)

    def __call__(self, execution: Execution) -> None:
        self.batch([execution])

    def batch(self, executions: list[Execution]) -> None:
        state = self.state
        if state is None:
            return
        for execution in executions:
            orm = execution.orm
            if orm is None or orm.kind != "eager_load":
                continue
            if orm.relationship is not None:
                _watch(orm.relationship)
            state.loaded_by(orm.attribute, execution.call_site)

    def close(self) -> None:
        state = self.state
        if state is not None:
            state.final = state.unused()  # before the attributes are switched back
            _release(state)

    def contribute(self, fields: dict[str, Any]) -> None:
        if self.state is not None:
            fields["unused_eager_loads"] = self.state.unused()
