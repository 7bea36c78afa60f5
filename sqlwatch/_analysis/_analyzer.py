"""The per-dialect analyzer: bounded caches in front of the scanner and sqlglot.

Every statement an application runs comes through ``StatementAnalyzer.__call__``,
so the common case (SQLAlchemy re-running the same compiled string) is one dict
lookup. A statement not seen verbatim is shaped (values out, a few µs); one
whose shape is new is normalized; and only a new normalized text is parsed by
sqlglot. Each step has its own cache, keyed by what that step produced.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import deque
from typing import Final, Generic, NamedTuple, TypeVar

from sqlglot.dialects.dialect import Dialect

from sqlwatch._analysis._dialects import known_dialect_names, scan_flags, sqlglot_dialect_name
from sqlwatch._analysis._normalize import Normalized, Normalizer
from sqlwatch._analysis._parse import Parsed, parse
from sqlwatch._analysis._shape import Shaper
from sqlwatch._guard import report_internal_error
from sqlwatch.records import StatementInfo

__all__ = [
    "MAX_EXACT_ENTRIES",
    "MAX_EXACT_KEY_CHARS",
    "MAX_NORMALIZED_CHARS",
    "MAX_PARSE_CHARS",
    "MAX_PARSE_DEPTH",
    "MAX_SHAPE_ENTRIES",
    "CacheInfo",
    "StatementAnalyzer",
    "analyze",
    "analyzer_for",
    "clear_caches",
]

MAX_EXACT_ENTRIES: Final = 4096
"""Distinct SQL strings remembered verbatim, per analyzer."""
MAX_EXACT_KEY_CHARS: Final = 8192
"""Longer strings are not remembered verbatim (they are still cached by shape)."""
MAX_SHAPE_ENTRIES: Final = 2048
"""Distinct shapes (SQL with values taken out), and distinct normalized texts,
remembered per analyzer."""
MAX_SHAPE_KEY_CHARS: Final = 8192
"""Longer shapes and normalized texts are keyed by a digest, so the caches'
memory stays bounded."""
MAX_PARSE_CHARS: Final = 32_768
"""sqlglot is skipped above this: its cost grows with the text (about 1 µs a
character, 5 for long expression chains), and the first sight of a statement
must not stall the application for long."""
MAX_PARSE_DEPTH: Final = 100
"""sqlglot is skipped for deeper bracket nesting: it recurses, and gives up near 500."""
MAX_NORMALIZED_CHARS: Final = 8192
"""Longer normalized texts are cut (the fingerprint still covers all of it):
reports and spans carry them, and a megabyte of SQL helps nobody there."""

_TRUNCATED: Final = " /* truncated */"

_K = TypeVar("_K", bound="str | bytes")


class CacheInfo(NamedTuple):
    """How much an analyzer holds and how often it called sqlglot."""

    exact: int
    shapes: int
    normalized: int
    parses: int


class _Fifo(Generic[_K]):
    """A dict bounded to its ``limit`` newest keys, oldest out first, no lock.

    The insertion order lives in a deque: evicting through ``next(iter(dict))``
    looks O(1) but walks the deleted slots a dict keeps until it resizes (about
    6 µs a call at 4,096 entries). Races between threads (two inserting one key,
    two evicting at once) at worst evict an entry early: a recomputation.
    """

    __slots__ = ("_order", "entries", "limit")

    def __init__(self, limit: int) -> None:
        self.entries: dict[_K, StatementInfo] = {}
        self._order: deque[_K] = deque()
        self.limit = limit

    def add(self, key: _K, info: StatementInfo) -> None:
        self.entries[key] = info
        self._order.append(key)
        while len(self._order) > self.limit:
            with contextlib.suppress(IndexError):
                self.entries.pop(self._order.popleft(), None)

    def clear(self) -> None:
        self.entries.clear()
        self._order.clear()


class StatementAnalyzer:
    """Turns SQL strings into ``StatementInfo``; one shared instance per dialect.

    Never raises, whatever the string. Safe to share between threads: the
    caches are plain dicts, whose single operations the GIL makes atomic; two
    threads racing on one new statement both compute the same answer.
    ``max_statements`` and ``max_shapes`` bound the caches (see the module).
    """

    __slots__ = (
        "_dialect",
        "_exact",
        "_normalize",
        "_normalized",
        "_shape",
        "_shapes",
        "_statements",
        "cached",
        "dialect",
        "parse_count",
    )

    def __init__(
        self,
        dialect: str | None,
        *,
        max_statements: int = MAX_EXACT_ENTRIES,
        max_shapes: int = MAX_SHAPE_ENTRIES,
    ) -> None:
        self.dialect = sqlglot_dialect_name(dialect) or ""
        """sqlglot's name of the dialect; ``""`` for generic SQL."""
        self._dialect = Dialect.get_or_raise(self.dialect or None)
        flags = scan_flags(self._dialect)
        self._shape = Shaper(flags)
        self._normalize = Normalizer(flags)
        self._statements: _Fifo[str] = _Fifo(max_statements)
        self._exact = self._statements.entries  # the hot path's one lookup
        self.cached = self._exact.get
        """The exact-string cache's ``get``: a C call, for batch processing that
        falls back to ``__call__`` on ``None``."""
        self._shapes: _Fifo[str | bytes] = _Fifo(max_shapes)
        self._normalized: _Fifo[str | bytes] = _Fifo(max_shapes)
        self.parse_count = 0
        """sqlglot parses so far (approximate under concurrent use)."""

    def __call__(self, sql: str) -> StatementInfo:
        try:
            return self._exact[sql]
        except (KeyError, TypeError):
            return self._miss(sql)

    def redact(self, sql: str) -> str:
        """``sql`` with its literal values as ``?`` (parameters and layout kept)."""
        try:
            return self._shape.redact(_as_text(sql))
        except Exception as exc:  # never raises: an unreadable statement is dropped
            report_internal_error("redaction", exc)
            return ""

    def cache_info(self) -> CacheInfo:
        return CacheInfo(
            len(self._exact),
            len(self._shapes.entries),
            len(self._normalized.entries),
            self.parse_count,
        )

    def clear(self) -> None:
        """Forget every cached statement and reset the parse count."""
        self._statements.clear()
        self._shapes.clear()
        self._normalized.clear()
        self.parse_count = 0

    def _miss(self, sql: object) -> StatementInfo:
        text = _as_text(sql)
        try:
            info = self._by_shape(text)
        except Exception as exc:  # a bug here must not reach the application
            report_internal_error("statement analysis", exc)
            info = _unanalyzable()
        if isinstance(sql, str) and len(sql) <= MAX_EXACT_KEY_CHARS:
            self._statements.add(sql, info)
        return info

    def _by_shape(self, sql: str) -> StatementInfo:
        shape = self._shape(sql)
        key = _key(shape)
        try:
            return self._shapes.entries[key]
        except KeyError:
            pass
        info = self._by_normalized(self._normalize(shape))
        self._shapes.add(key, info)
        return info

    def _by_normalized(self, normalized: Normalized) -> StatementInfo:
        """Shapes that differ in whitespace, keyword case or list forms the shape
        pass does not collapse share their normalized text: parse that once."""
        key = _key(normalized.text)
        try:
            return self._normalized.entries[key]
        except KeyError:
            pass
        info = self._analyze(normalized)
        self._normalized.add(key, info)
        return info

    def _analyze(self, normalized: Normalized) -> StatementInfo:
        operation = normalized.operation
        if normalized.simple_tcl:
            return _info(normalized, (), operation, parse_ok=True)
        parsed = self._parse(normalized)
        if parsed is None:
            return _info(normalized, (), operation, parse_ok=False)
        return _info(normalized, parsed.tables, parsed.summary, parse_ok=True)

    def _parse(self, normalized: Normalized) -> Parsed | None:
        """Parse the normalized text; failing that, the same with its placeholders
        as string literals (``DATE '2024-01-01'`` is valid SQL, ``DATE ?`` is
        not). Only if small and shallow enough.

        The normalized text, not the raw one: its values are gone, so it is
        short even for a 10,000-element IN list or a megabyte INSERT, and it is
        the same for every statement of the shape, so the answer is too.
        """
        if normalized.depth > MAX_PARSE_DEPTH or len(normalized.text) > MAX_PARSE_CHARS:
            return None
        self.parse_count += 1
        parsed = parse(self._dialect, normalized.text, normalized.operation)
        if parsed is None:
            with_strings = self._normalize.with_strings(normalized.text)
            if with_strings != normalized.text:
                self.parse_count += 1
                parsed = parse(self._dialect, with_strings, normalized.operation)
        return parsed


def _info(
    normalized: Normalized, tables: tuple[str, ...], summary: str, *, parse_ok: bool
) -> StatementInfo:
    text = normalized.text
    fingerprint = _digest(text).hex()
    if len(text) > MAX_NORMALIZED_CHARS:
        text = text[:MAX_NORMALIZED_CHARS] + _TRUNCATED
    return StatementInfo(
        operation=normalized.operation,
        tables=tables,
        fingerprint=fingerprint,
        normalized=text,
        parse_ok=parse_ok,
        summary=summary,
    )


def _key(text: str) -> str | bytes:
    return text if len(text) <= MAX_SHAPE_KEY_CHARS else _digest(text)


def _digest(text: str) -> bytes:
    """Stable across processes and runs, unlike ``hash()``; lone surrogates allowed."""
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8).digest()


def _unanalyzable() -> StatementInfo:
    return StatementInfo(
        operation="OTHER",
        tables=(),
        fingerprint=_digest("").hex(),
        normalized="",
        parse_ok=False,
        summary="OTHER",
    )


def _as_text(sql: object) -> str:
    """The type says ``str``; a driver may still hand over bytes or a ``TextClause``."""
    if isinstance(sql, str):
        return sql
    if isinstance(sql, (bytes, bytearray, memoryview)):
        return bytes(sql).decode("utf-8", "replace")
    try:
        return str(sql)
    except Exception:
        return ""


# -- shared instances ----------------------------------------------------------

_MAX_NAMES: Final = 64
_analyzers: dict[str | None, StatementAnalyzer] = {}
_by_sqlglot_name: dict[str, StatementAnalyzer] = {}
_creating = threading.Lock()


def analyzer_for(dialect: str | None) -> StatementAnalyzer:
    """The process-wide analyzer for ``dialect`` (any name; unknown means generic).

    Names that mean the same sqlglot dialect (``postgresql``, ``postgres``)
    share one analyzer, and so its caches.
    """
    try:
        return _analyzers[dialect]
    except (KeyError, TypeError):
        pass
    name = dialect if isinstance(dialect, str) else None
    resolved = sqlglot_dialect_name(name) or ""
    with _creating:
        analyzer = _by_sqlglot_name.get(resolved)
        if analyzer is None:
            analyzer = _by_sqlglot_name[resolved] = StatementAnalyzer(resolved)
        if len(_analyzers) < _MAX_NAMES:
            _analyzers[name] = analyzer
    return analyzer


def analyze(sql: str, dialect: str | None = None) -> StatementInfo:
    """What sqlwatch makes of ``sql``: operation, tables, fingerprint, normalized text.

    ``dialect`` is a SQLAlchemy (``postgresql``) or sqlglot (``postgres``)
    dialect name; an unknown one raises ``ValueError``. Never raises for ``sql``.
    """
    if dialect is not None and not (isinstance(dialect, str) and sqlglot_dialect_name(dialect)):
        expected = ", ".join(known_dialect_names())
        raise ValueError(f"unknown dialect {dialect!r}; expected one of: {expected}")
    return analyzer_for(dialect)(sql)


def redact_literals(sql: str, dialect: str | None = None) -> str:
    """``sql`` with every literal value replaced by ``?``; placeholders, layout and
    identifiers kept. Reports redact SQL with it before it leaves the process."""
    return analyzer_for(dialect).redact(sql)


def clear_caches() -> None:
    """Empty every shared analyzer's caches and reset their parse counts."""
    with _creating:
        analyzers = list(_by_sqlglot_name.values())
    for analyzer in analyzers:
        analyzer.clear()
