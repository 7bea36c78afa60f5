"""Which ORM loader emitted a statement, read where the statement runs.

nplusone patched ``Query.__iter__`` and read attributes SQLAlchemy 2 removed.
SQLAlchemy 2 says it outright, in the load options the ORM hands down with
every SELECT it runs (the execution option ``_sa_orm_load_options``, which
``ORMExecuteState.lazy_loaded_from`` and ``is_column_load`` read too): a lazy
load names the instance it loads for, a deferred or expired column load the
instance it refreshes, and the statement's compile options carry the loader
path (``ORMExecuteState.loader_strategy_path``): which relationship.

The cursor listener reads them from the ``ExecutionContext`` of the very
statement it times, so the label cannot land on another statement. An earlier
design listened to ``SessionEvents.do_orm_execute`` and passed the label on:
that event builds an ``ORMExecuteState`` for every ORM execution, and the
listener alone cost 4% of a typical ORM workload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from sqlwatch._capture.execution import OrmLoad
from sqlwatch._guard import report_internal_error

__all__ = ["BOOKKEEPING_CODES", "LOAD_OPTIONS", "OrmHooks", "describe_load"]

LOAD_OPTIONS = "_sa_orm_load_options"
"""The execution option in which the ORM passes a SELECT's load options down."""

BOOKKEEPING_CODES = frozenset({Session.flush.__code__, Session.delete.__code__})
"""Public ``Session`` methods that load attributes for the ORM's own needs: a flush
(foreign keys to null out, orphans) and ``delete()`` cascading to a collection. A
load under them is the unit of work's business, not an N+1 of the application."""

_relationships: dict[int, tuple[Any, str, bool, Any]] = {}
"""id(loader path) -> (the path, "User.addresses", uselist, the property). SQLAlchemy interns
its path objects, so a relationship is described once, not on every lazy load.
Keyed by ``id``: a path's own ``__hash__`` is a Python call; the path kept in the
value tells a reused ``id`` apart."""
_MAX_RELATIONSHIPS = 4_096
_new_load = tuple.__new__
"""Builds an ``OrmLoad`` without ``NamedTuple``'s Python-level ``__new__``."""


def _describe_relationship(path: Any) -> tuple[Any, str, bool, Any]:
    described = _relationships.get(id(path))
    if described is None or described[0] is not path:
        prop: Any = path.path[-1]
        described = (path, f"{prop.parent.class_.__name__}.{prop.key}", bool(prop.uselist), prop)
        if len(_relationships) >= _MAX_RELATIONSHIPS:
            _relationships.clear()
        _relationships[id(path)] = described
    return described


def describe_load(load_options: Any, context: Any) -> OrmLoad | None:
    """The loader behind an ORM SELECT, or ``None`` for the application's own query.

    ``load_options`` is the statement's ``_sa_orm_load_options``; ``context`` its
    ``ExecutionContext``. ``internal`` says whether the session is flushing; a
    ``Session.delete`` cascade is found by the call-site walk.
    """
    parent = load_options._lazy_loaded_from
    if parent is not None:
        path = _loader_path(context)
        if path is None or path.is_root:
            return None
        _, attribute, uselist, _ = _describe_relationship(path)
        identity = parent.key
        return _new_load(
            OrmLoad,
            (
                "lazy_load",
                attribute,
                id(parent) if identity is None else identity,
                uselist,
                parent.session_id or 0,
                _flushing(parent),
                None,
            ),
        )
    refreshed = load_options._refresh_state
    if refreshed is not None:
        compile_options = getattr(context.invoked_statement, "_compile_options", None)
        columns = getattr(compile_options, "_only_load_props", None)
        if not columns:
            return None  # a full refresh (session.refresh, expired instance)
        cls_name = refreshed.class_.__name__
        attribute = ", ".join(f"{cls_name}.{key}" for key in sorted(columns))
        identity = refreshed.key if refreshed.key is not None else id(refreshed)
        return OrmLoad(
            "column_load",
            attribute,
            identity,
            False,
            refreshed.session_id or 0,
            _flushing(refreshed),
        )
    path = _loader_path(context)
    if path is None or path.is_root:
        return None
    _, attribute, uselist, prop = _describe_relationship(path)
    return _new_load(OrmLoad, ("eager_load", attribute, None, uselist, 0, False, prop))


def _flushing(state: Any) -> bool:
    """Whether the instance's session is inside a flush (autoflush and commit
    included): a load then is the unit of work's own business."""
    return bool(getattr(state.session, "_flushing", False))


def _loader_path(context: Any) -> Any:
    compile_options = getattr(context.invoked_statement, "_compile_options", None)
    return getattr(compile_options, "_current_path", None)


class OrmHooks:
    """Undo functions of the class-level ORM hooks other components add (the
    unused-eager-load detector's), run by ``sqlwatch.reset()`` and the last
    ``uninstrument()``."""

    def __init__(self) -> None:
        self.removers: list[Callable[[], None]] = []

    def remove(self) -> None:
        while self.removers:
            remover = self.removers.pop()
            try:
                remover()
            except Exception as exc:
                report_internal_error("ORM hook removal", exc)
