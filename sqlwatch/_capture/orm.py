"""Which ORM loader emitted a statement, from the public ``do_orm_execute`` event.

nplusone patched ``Query.__iter__`` and read attributes SQLAlchemy 2 removed.
``ORMExecuteState`` says it outright: ``is_relationship_load`` with
``lazy_loaded_from`` for a lazy load, ``is_column_load`` for a deferred or
expired column.

The answer travels to the cursor listener in a ``ContextVar``, paired with the
statement object it describes; the cursor listener takes it only for that very
statement (``ExecutionContext.invoked_statement``). Passing it as an execution
option would be simpler, but ``update_execution_options`` makes SQLAlchemy
redo work for every loader statement: it cost 14% of a typical ORM workload.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import FrameType
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from sqlwatch._capture.call_sites import is_internal_file
from sqlwatch._capture.execution import OrmLoad
from sqlwatch._guard import report_internal_error

__all__ = ["OrmListener", "describe_load", "pending_load", "take_load"]

Tagged = tuple[tuple[Any, OrmLoad], ...]

pending_load: ContextVar[Tagged] = ContextVar("sqlwatch_orm_load", default=())
"""Statements the ORM is about to run on behalf of a loader, newest first, with
what they load. More than one can wait: an autoflush runs between a load's
``do_orm_execute`` and its cursor call, and may itself lazy-load."""

MAX_PENDING = 8
"""A tag whose statement never ran (it failed before the cursor) ages out."""


def take_load(tagged: Tagged, statement: Any) -> OrmLoad | None:
    """The load tagged for ``statement``, removed from the pending ones."""
    for index, (waiting, load) in enumerate(tagged):
        if waiting is statement:
            pending_load.set(tagged[:index] + tagged[index + 1 :])
            return load
    return None


_relationships: dict[Any, tuple[str, bool]] = {}
"""Loader path -> ("User.addresses", uselist). SQLAlchemy interns its path
objects, so a relationship is described once, not on every lazy load."""
_MAX_RELATIONSHIPS = 4_096


def _describe_relationship(path: Any) -> tuple[str, bool]:
    prop: Any = path.path[-1]
    described = (f"{prop.parent.class_.__name__}.{prop.key}", bool(prop.uselist))
    if len(_relationships) >= _MAX_RELATIONSHIPS:
        _relationships.clear()
    _relationships[path] = described
    return described


def describe_load(state: ORMExecuteState) -> OrmLoad | None:
    """The loader behind an ORM SELECT, or ``None`` for the application's own queries."""
    if not state.is_select:
        return None
    path = state.loader_strategy_path
    if path is not None and not path.is_root:  # ``is_relationship_load``, read once
        described = _relationships.get(path)
        if described is None:
            described = _describe_relationship(path)
        attribute, uselist = described
        parent = state.lazy_loaded_from
        if parent is None:
            return OrmLoad("eager_load", attribute, None, uselist)
        identity = parent.key if parent.key is not None else id(parent)
        return OrmLoad(
            "lazy_load",
            attribute,
            identity,
            uselist,
            state.session.hash_key,
            _in_orm_bookkeeping(),
        )
    if state.is_column_load:
        refreshed: Any = state.load_options._refresh_state
        if refreshed is None:
            return None
        columns = getattr(state.statement._compile_options, "_only_load_props", None)
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
            state.session.hash_key,
            _in_orm_bookkeeping(),
        )
    return None


_BOOKKEEPING_CODES = frozenset({Session.flush.__code__, Session.delete.__code__})
"""Public ``Session`` methods that load attributes for the ORM's own needs: a flush
(foreign keys to null out, orphans) and ``delete()`` cascading to a collection."""


def _in_orm_bookkeeping() -> bool:
    """Whether the ORM, not the application, asked for this load.

    Walks the SQLAlchemy frames between this listener and the application's code
    (about twenty; only for loader statements): a lazy load under ``Session.flush``
    or ``Session.delete`` is the unit of work's business, not an N+1 of the app.
    """
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code in _BOOKKEEPING_CODES:
            return True
        if not is_internal_file(code.co_filename):
            return False
        frame = frame.f_back
    return False


def _on_orm_execute(state: ORMExecuteState) -> None:
    try:
        load = describe_load(state)
        if load is not None:
            pending_load.set(((state.statement, load), *pending_load.get()[: MAX_PENDING - 1]))
    except Exception as exc:
        report_internal_error("ORM execute listener", exc)


class OrmListener:
    """One class-level ``Session`` listener, shared by every instrumented engine."""

    def __init__(self) -> None:
        self.installed = False
        self.removers: list[Callable[[], None]] = []
        """Undo functions of other class-level ORM hooks (the unused-eager-load
        detector's): run by ``remove``, so ``reset()`` and the last
        ``uninstrument()`` take them off too."""

    def install(self) -> None:
        if not self.installed:
            event.listen(Session, "do_orm_execute", _on_orm_execute)
            self.installed = True

    def remove(self) -> None:
        if self.installed:
            if event.contains(Session, "do_orm_execute", _on_orm_execute):
                event.remove(Session, "do_orm_execute", _on_orm_execute)
            self.installed = False
        while self.removers:
            remover = self.removers.pop()
            try:
                remover()
            except Exception as exc:
                report_internal_error("ORM hook removal", exc)
