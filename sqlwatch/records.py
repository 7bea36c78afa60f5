"""The data contract: what sqlwatch tells you about your SQL.

Every record is a frozen, slotted dataclass with plain fields, so reports can be
compared, pickled across pytest-xdist workers and round-tripped through JSON
(``to_dict`` / ``from_dict``). Nothing here imports SQLAlchemy: records outlive
the engines that produced them and load in a process that has no database.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
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
    "RecordError",
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
    call_site_counts: tuple[int, ...] = ()
    """How many of the statements ran from each of ``call_sites``, in the same order:
    lets merged reports (pytest-xdist workers) rank call sites by frequency. Empty
    in reports written before the field existed."""


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


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_MAX_STRICT_DEPTH = 32


def strict_jsonable(value: Any, _seen: set[int] | None = None, _depth: int = 0) -> Any:
    """``value`` in the types strict JSON (RFC 8259) holds, for what leaves the
    process as text: captured parameters in a report, any ``extra`` of a log record.
    A NaN or infinite float becomes ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``
    (``json`` would write them bare, which parsers reject); keys become strings,
    sets and tuples lists, anything else its ``str()``; a structure that contains
    itself, or nests past 32 levels, is cut with ``"..."``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[repr(value)]
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        seen = set() if _seen is None else _seen
        if id(value) in seen or _depth >= _MAX_STRICT_DEPTH:
            return "..."
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                return {
                    k if isinstance(k, str) else str(k): strict_jsonable(v, seen, _depth + 1)
                    for k, v in value.items()
                }
            return [strict_jsonable(item, seen, _depth + 1) for item in value]
        finally:
            seen.discard(id(value))
    return str(value)


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


class RecordError(ValueError):
    """A record's JSON form that does not fit the record; the message names the field
    (``scopes[0].query_count must be an integer, got the string '3'``)."""


def record_from_dict(cls: type[_R], data: Any, where: str = "", *, nullable: bool = False) -> _R:
    """Rebuild a record from ``record_to_dict`` output, checking every value's type.

    Unknown keys are ignored: newer sqlwatch versions may add fields, and ignoring
    what this version does not know keeps old readers working on new reports. A
    missing field without a default, or a value of the wrong type, raises
    ``RecordError`` naming the field by its path from ``where``. Integers must fit
    in 64 bits and numbers must be finite, as any JSON reader can hold them.
    """
    if not isinstance(data, Mapping):
        raise _wrong(where or cls.__name__, "an object", data, nullable)
    kwargs: dict[str, Any] = {}
    record_type: type = cls  # hashable, for the cache
    for name, (hint, required) in _fields(record_type).items():
        path = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _from_jsonable(hint, data[name], path)
        elif required:
            raise RecordError(f"{path} is missing")
    return cls(**kwargs)


@functools.cache
def _fields(cls: type[Any]) -> dict[str, tuple[Any, bool]]:
    """Each field's type hint, and whether it is required (has no default)."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: (
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    }


_INT_RANGE = range(-(2**63), 2**63)

MAX_ANY_DEPTH = 64
"""Nesting allowed in a field of any JSON (``Statement.params``). A driver's
parameters are a few levels deep (rows of an executemany, a multi-dimensional
array); a file nested deeper would overflow the stack of whatever walks it."""


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (Mapping, list, tuple)):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _from_jsonable(hint: Any, value: Any, where: str, *, nullable: bool = False) -> Any:
    if hint is Any:  # captured parameters: any JSON, within reason
        if _deeper_than(value, MAX_ANY_DEPTH):
            raise RecordError(f"{where} is nested too deeply (over {MAX_ANY_DEPTH} levels)")
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: the only unions of records
        if value is None and type(None) in args:
            return None
        (other,) = (a for a in args if a is not type(None))
        return _from_jsonable(other, value, where, nullable=type(None) in args)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, "a list", value, nullable)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise RecordError(f"{where} must be a list of {len(args)}, got {len(value)} items")
        return tuple(
            _from_jsonable(a, v, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong(where, "an object", value, nullable)
        return {
            k: _from_jsonable(args[1], v, f"{where}[{json.dumps(k)}]") for k, v in value.items()
        }
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return record_from_dict(hint, value, where, nullable=nullable)
    return _scalar(hint, value, where, nullable)


def _scalar(hint: Any, value: Any, where: str, nullable: bool) -> Any:
    if hint is str:
        if isinstance(value, str):
            return value
        raise _wrong(where, "a string", value, nullable)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(where, "true or false", value, nullable)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        if number and isinstance(value, float) and value.is_integer():
            value = int(value)  # 3.0: JSON (and JSON Schema) do not tell it from 3
        if number and isinstance(value, int) and value in _INT_RANGE:
            return value
        raise _wrong(where, "an integer", value, nullable)
    if hint is float:
        if number and (value in _INT_RANGE if isinstance(value, int) else math.isfinite(value)):
            return float(value)
        raise _wrong(where, "a finite number", value, nullable)
    return value


def _wrong(where: str, expected: str, value: Any, nullable: bool) -> RecordError:
    return RecordError(f"{where} must be {expected}{' or null' * nullable}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A JSON value in a one-line message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, int) and value not in _INT_RANGE:
        return "an integer out of range"
    return repr(value) if isinstance(value, (int, float)) else type(value).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineInfo:
    """What exporters need to know of an instrumented engine (no password)."""

    name: str
    dialect: str
    driver: str
    host: str | None
    port: int | None
    database: str | None
