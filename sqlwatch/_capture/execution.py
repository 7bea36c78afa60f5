"""The raw record of one statement, as the hot path leaves it.

Building a public ``Statement`` (a frozen dataclass with a formatted call site
and an ISO timestamp) costs microseconds, so the listener stores this tuple
instead and every scope that saw the statement shares it. ``to_statement``
turns it into the public record when someone reads it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlwatch._capture.call_sites import CallSite, format_call_site
from sqlwatch.records import Statement, StatementInfo

if TYPE_CHECKING:
    from sqlwatch._capture.engine import EngineTracker

__all__ = [
    "Execution",
    "OrmLoad",
    "RawExecution",
    "new_raw",
    "perf_to_epoch_ns",
    "to_statement",
]

# perf_counter_ns is the clock for durations; wall time comes from one anchor
# taken at import, so the hot path never calls time.time().
_EPOCH_MINUS_PERF_NS = time.time_ns() - time.perf_counter_ns()


def perf_to_epoch_ns(perf_ns: int) -> int:
    return _EPOCH_MINUS_PERF_NS + perf_ns


def epoch_ns_to_iso(epoch_ns: int) -> str:
    moment = datetime.fromtimestamp(epoch_ns / 1e9, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class OrmLoad(NamedTuple):
    """Why the ORM emitted a statement, when it did so on behalf of a loader."""

    kind: str
    """``lazy_load`` (one parent's relationship), ``column_load`` (a deferred or
    expired column of one instance), ``eager_load`` (selectin/subquery loaders)."""
    attribute: str
    """``User.addresses`` or ``Post.body``."""
    parent: Any
    """Identity of the instance loaded for (its identity key), or ``None``."""
    uselist: bool
    """A collection (suggest ``selectinload``) or a scalar (``joinedload``)."""
    session_key: int = 0
    """``Session.hash_key`` of the session that ran the load (0 if unknown)."""
    internal: bool = False
    """The ORM loaded it for its own bookkeeping (inside ``Session.flush`` or a
    ``Session.delete`` cascade), not because the application read the attribute."""
    relationship: Any = None
    """The ``RelationshipProperty`` an eager loader loads (``None`` for the other
    kinds): the unused-eager-load detector watches its attribute."""


class RawExecution(NamedTuple):
    """What the listener records: references only, nothing computed.

    Built with ``new_raw`` (``tuple.__new__``), which skips the Python-level
    ``NamedTuple.__new__``: the listener pays for one tuple, nothing more.
    """

    tracker: EngineTracker
    sql: str
    params: Any
    """Held only until the batch is processed (hashed, then dropped unless
    ``capture_params``)."""
    start_ns: int
    duration_ns: int
    rowcount: int | None
    batch_size: int
    """0 for a single execution; the number of parameter sets for executemany."""
    call_site: CallSite | None
    orm: OrmLoad | None
    error: type[BaseException] | None
    chain: Any
    """The ``ScopeChain`` that was current when the statement ran."""


new_raw = tuple.__new__


class Execution(NamedTuple):
    """A processed statement: analyzed, parameters hashed. Shared by every scope."""

    tracker: EngineTracker
    sql: str
    info: StatementInfo
    start_ns: int
    """``perf_counter_ns`` at the start of the cursor call."""
    duration_ns: int
    rowcount: int | None
    executemany: bool
    batch_size: int
    call_site: CallSite | None
    orm: OrmLoad | None
    error: type[BaseException] | None
    param_hash: int
    params: Any
    """Only with ``capture_params``; otherwise ``None``."""
    unit: int = 0
    """The chain's unit of work (``ScopeChain.unit``; 0 outside any scope)."""
    n_plus_one_ignore: tuple[str, ...] | None = None
    """The ``ignore_n_plus_one()`` patterns in force when the statement ran."""

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6

    @property
    def call_site_text(self) -> str | None:
        return format_call_site(self.call_site)


def to_statement(execution: Execution, *, with_params: bool = True) -> Statement:
    """The public record. ``with_params=False`` leaves the parameters out: one
    execution is shared by every scope, and only scopes that asked for
    ``capture_params`` may show them."""
    info = execution.info
    orm = execution.orm
    error = execution.error
    return Statement(
        sql=execution.sql,
        operation=info.operation,
        tables=info.tables,
        fingerprint=info.fingerprint,
        normalized=info.normalized,
        duration_ms=execution.duration_ns / 1e6,
        rowcount=execution.rowcount,
        executemany=execution.executemany,
        started_at=epoch_ns_to_iso(perf_to_epoch_ns(execution.start_ns)),
        engine=execution.tracker.name,
        call_site=format_call_site(execution.call_site),
        relationship=orm.attribute if orm is not None and orm.kind == "lazy_load" else None,
        error=error.__name__ if error is not None else None,
        params=execution.params if with_params else None,
    )
