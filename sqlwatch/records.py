"""The data contract: what sqlwatch tells you about your SQL.

Every record is a frozen, slotted dataclass with plain fields, so reports can be
compared, pickled across pytest-xdist workers and round-tripped through JSON
(``to_dict`` / ``from_dict``). Nothing here imports SQLAlchemy: records outlive
the engines that produced them and load in a process that has no database.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "Duplicate",
    "EngineInfo",
    "FingerprintStats",
    "Leak",
    "NPlusOne",
    "PoolStats",
    "Resources",
    "ScopeSummary",
    "SessionStats",
    "Statement",
    "StatementInfo",
    "UnusedEagerLoad",
]

_R = TypeVar("_R")

Percentiles = dict[str, float]
"""``{"p50": ms, "p95": ms, "max": ms}``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementInfo:
    """What sqlwatch's parser makes of one SQL string (see ``sqlwatch.analyze``)."""

    operation: str
    tables: tuple[str, ...]
    fingerprint: str
    normalized: str
    parse_ok: bool
    summary: str = ""
    """The OpenTelemetry ``db.query.summary``: ``SELECT orders users``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """One statement as it was sent to the database driver."""

    sql: str
    operation: str
    tables: tuple[str, ...]
    fingerprint: str
    normalized: str
    duration_ms: float
    rowcount: int | None
    executemany: bool
    started_at: str
    engine: str
    call_site: str | None
    relationship: str | None
    error: str | None
    params: Any = None
    """Bound parameters; only filled when the ``capture_params`` option is on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NPlusOne:
    """A loop that issues one query per row, with where it is and how to fix it."""

    fingerprint: str
    normalized: str
    example_sql: str
    count: int
    total_ms: float
    call_site: str | None
    relationship: str | None
    tables: tuple[str, ...]
    suggestion: str
    kind: str = "repeated_statement"
    """``lazy_load``, ``column_load`` or ``repeated_statement`` (Core and raw SQL)."""
    loaded_by: str | None = None
    """Where known, the normalized SQL of the query that loaded the parent rows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FingerprintStats:
    """Aggregate timings of every statement that shares one fingerprint."""

    fingerprint: str
    normalized: str
    operation: str
    tables: tuple[str, ...]
    count: int
    total_ms: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    call_sites: tuple[str, ...]
    histogram: tuple[tuple[int, int], ...] = ()
    """Log-bucketed durations ``(bucket, count)``: lets merged reports keep accurate
    percentiles. Bucket ``i`` holds durations near ``1.02 ** i`` nanoseconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStats:
    """One engine's connection pool. Fields a pool class has no notion of are ``None``."""

    engine: str
    pool_class: str
    size: int | None
    max_overflow: int | None
    checked_out: int
    peak_checked_out: int
    checkouts: int
    checkins: int
    connects: int
    invalidations: int
    timeouts: int | None
    wait_ms: Percentiles
    hold_ms: Percentiles


@dataclass(frozen=True, slots=True, kw_only=True)
class Leak:
    """A connection that was not given back, or held too long."""

    engine: str
    kind: str
    held_ms: float
    call_site: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnusedEagerLoad:
    """An eager-loaded relationship that nothing read before the scope ended."""

    relationship: str
    call_site: str | None
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    """The same SQL with the same parameters, run more than once: a caching hint."""

    sql: str
    count: int
    call_sites: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStats:
    """ORM sessions opened and closed in a scope."""

    opened: int = 0
    closed: int = 0
    unclosed: int = 0
    unclosed_call_sites: tuple[str, ...] = ()
    """Where the sessions still open at the end of the scope were created."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """Process resources around a scope, from psutil."""

    rss_start_bytes: int = 0
    rss_end_bytes: int = 0
    cpu_s: float = 0.0
    rss_peak_bytes: int = 0
    """Highest RSS sampled at statement boundaries (rate-limited)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeSummary:
    """One named scope inside a report: a test, an endpoint, a watch.

    Scopes that share a name (every request to ``GET /users/{id}``) aggregate
    into one summary; ``runs`` says how many times the scope ran.
    """

    name: str
    runs: int
    query_count: int
    total_query_ms: float
    duration_ms: float
    queries_per_run: Percentiles
    n_plus_one: tuple[NPlusOne, ...] = ()


# -- JSON boundary -----------------------------------------------------------


def record_to_dict(record: object) -> dict[str, Any]:
    """A JSON-ready dict of a record: tuples become lists, nested records dicts."""
    return {
        f.name: _to_jsonable(getattr(record, f.name))
        for f in dataclasses.fields(record)  # type: ignore[arg-type]
    }


def _to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return record_to_dict(value)
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def record_from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
    """Rebuild a record from ``record_to_dict`` output; unknown keys are ignored.

    Newer sqlwatch versions may add fields: ignoring what this version does not
    know keeps old readers working on new reports.
    """
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _from_jsonable(hints[f.name], data[f.name])
    return cls(**kwargs)


def _from_jsonable(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _from_jsonable(non_none[0], value) if len(non_none) == 1 else value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v) for v in value)
        return tuple(_from_jsonable(a, v) for a, v in zip(args, value, strict=False))
    if origin is dict:
        return {k: _from_jsonable(args[1], v) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return record_from_dict(hint, value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineInfo:
    """What exporters need to know of an instrumented engine (no password)."""

    name: str
    dialect: str
    driver: str
    host: str | None
    port: int | None
    database: str | None
