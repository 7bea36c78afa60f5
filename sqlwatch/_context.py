"""Which scopes are open in the current thread or asyncio task.

One ``ContextVar`` holds the chain of open scopes, innermost last, with the
capture needs of the whole chain folded in, so the per-statement listener pays
one ``ContextVar.get()`` to learn everything. SQLAlchemy's async greenlets
inherit the awaiting task's context, so ``AsyncEngine`` statements land in the
scope of the task that awaited them. Scopes restore with tokens, so nesting
composes and an exception cannot leave a scope open.
"""

from __future__ import annotations

import itertools
from contextvars import ContextVar, Token
from typing import Any, NamedTuple

__all__ = [
    "EMPTY_CHAIN",
    "ScopeChain",
    "current_chain",
    "finding_from_elsewhere",
    "pop_scope",
    "push_scope",
]


class ScopeChain(NamedTuple):
    scopes: tuple[Any, ...]
    call_sites: bool
    params: bool
    sqlcommenter: bool
    statement_exporters: tuple[Any, ...]
    slow_ns: float
    """The lowest ``slow_query_ms`` of the chain, in ns: a statement this slow is
    processed at once, so its warning is not delayed."""
    unit: int = 0
    """Serial number of the outermost open scope (0: none is open): the unit of
    work in which the process-wide scope judges N+1s (see docs/n-plus-one.md)."""
    n_plus_one_ignore: tuple[str, ...] | None = None
    """Patterns of the enclosing ``ignore_n_plus_one()`` blocks (``("*",)`` for
    everything), or ``None`` outside any."""


EMPTY_CHAIN = ScopeChain((), False, False, False, (), float("inf"))

current_chain: ContextVar[ScopeChain] = ContextVar("sqlwatch_scopes", default=EMPTY_CHAIN)

finding_from_elsewhere: ContextVar[bool] = ContextVar("sqlwatch_elsewhere", default=False)
"""True while exporters are told of a finding whose statement ran in another
thread or task: whichever thread processes a batch reports what it found, and
an exporter that decorates "the current span" must leave that span alone."""

_unit_serials = itertools.count(1)


def push_scope(scope: Any, unit: int = 0) -> Token[ScopeChain]:
    """Open ``scope`` in the current context. ``unit``: the unit of work to be part
    of when no scope is open around it (a decorated generator's steps are one
    unit, however many times its scope is stepped in and out); 0 for a new one."""
    chain = current_chain.get()
    options = scope.options
    exporters = chain.statement_exporters + tuple(
        e for e in scope.exporters if e not in chain.statement_exporters
    )
    return current_chain.set(
        ScopeChain(
            scopes=(*chain.scopes, scope),
            call_sites=chain.call_sites or options.capture_call_sites,
            params=chain.params or options.capture_params,
            sqlcommenter=chain.sqlcommenter or options.sqlcommenter,
            statement_exporters=exporters,
            slow_ns=min(chain.slow_ns, options.slow_query_ms * 1e6),
            unit=chain.unit or unit or next(_unit_serials),
            n_plus_one_ignore=chain.n_plus_one_ignore,
        )
    )


def pop_scope(token: Token[ScopeChain]) -> None:
    current_chain.reset(token)
