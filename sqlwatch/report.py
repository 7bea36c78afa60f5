"""``Report``: everything one scope saw, and its JSON form.

The JSON carries ``schema_version`` so that a report saved by one version of
sqlwatch can be diffed by another; its JSON Schema ships in the package
(``sqlwatch/schema/report.schema.json``). ``merge`` is exact for counts and
percentiles (fingerprints carry their histograms), which is what combining
pytest-xdist workers needs.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlwatch._aggregate import REPORTED_CALL_SITES
from sqlwatch._histogram import LogHistogram
from sqlwatch._version import __version__
from sqlwatch.errors import SQLWatchError
from sqlwatch.records import (
    Duplicate,
    FingerprintStats,
    Leak,
    NPlusOne,
    PoolStats,
    RecordError,
    Resources,
    ScopeSummary,
    SessionStats,
    Statement,
    UnusedEagerLoad,
    record_from_dict,
    record_to_dict,
    strict_jsonable,
)

__all__ = ["SCHEMA_VERSION", "Report", "ReportError"]

SCHEMA_VERSION = 1

_K = TypeVar("_K")
_V = TypeVar("_V")


class ReportError(SQLWatchError, ValueError):
    """A report file that cannot be read: missing, not JSON, or not a report."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What a scope saw. Fields are as in the SPEC; all have empty defaults."""

    name: str = "process"
    started_at: str = ""
    duration_ms: float = 0.0
    query_count: int = 0
    total_query_ms: float = 0.0
    operations: dict[str, int] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    statements: tuple[Statement, ...] = ()
    dropped_statements: int = 0
    fingerprints: tuple[FingerprintStats, ...] = ()
    slow_queries: tuple[Statement, ...] = ()
    n_plus_one: tuple[NPlusOne, ...] = ()
    unused_eager_loads: tuple[UnusedEagerLoad, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()
    pools: dict[str, PoolStats] = field(default_factory=dict)
    leaks: tuple[Leak, ...] = ()
    sessions: SessionStats = field(default_factory=SessionStats)
    resources: Resources = field(default_factory=Resources)
    errors: dict[str, int] = field(default_factory=dict)
    scopes: tuple[ScopeSummary, ...] = ()
    """Named scopes that ran inside this one: tests, endpoints, named watches."""

    # -- JSON ---------------------------------------------------------------

    def redacted(self) -> Report:
        """The report with the literal values of every SQL text replaced by ``?``.

        A statement's ``sql`` is the text sent to the driver: an application that
        inlines values (``text(f"... WHERE token = '{token}'")``) puts them there.
        Statements whose parameters were captured (``capture_params=True``) keep
        their SQL: the user chose to keep values.

        What a literal is depends on the dialect (``"x"`` is a string in MySQL,
        an identifier in PostgreSQL), so each text is lexed as the dialect that
        ran it, and as every dialect that may have where that is not known
        (``_Redactor``).
        """
        redactor = _Redactor(self)
        return replace(
            self,
            statements=tuple(_redact_statement(s, redactor) for s in self.statements),
            slow_queries=tuple(_redact_statement(s, redactor) for s in self.slow_queries),
            duplicates=tuple(_redact_duplicate(d, redactor) for d in self.duplicates),
            n_plus_one=tuple(_redact_finding(f, redactor) for f in self.n_plus_one),
            scopes=tuple(
                replace(s, n_plus_one=tuple(_redact_finding(f, redactor) for f in s.n_plus_one))
                for s in self.scopes
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form. It leaves the process, so it is ``redacted()``."""
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "sqlwatch_version": __version__,
        }
        data.update(record_to_dict(self.redacted()))
        for statement in (*data["statements"], *data["slow_queries"]):
            if statement.get("params") is None:
                statement.pop("params", None)
            else:
                statement["params"] = strict_jsonable(statement["params"])
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        """Strict JSON (RFC 8259): never a bare ``NaN`` or ``Infinity``."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """The report of ``to_dict()`` output. Every value's type is checked: a wrong
        one is a one-line ``ReportError`` naming the field (``scopes[0].query_count
        must be an integer, got the string '3'``). Unknown keys are ignored."""
        if not isinstance(data, Mapping):
            raise ReportError("not a sqlwatch report: expected a JSON object")
        version = data.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:
            raise ReportError(
                f"not a sqlwatch report of schema version {SCHEMA_VERSION} "
                f"(schema_version is {version!r})"
            )
        try:
            return record_from_dict(cls, data)
        except RecordError as exc:
            raise ReportError(f"malformed sqlwatch report: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically: a temporary file in the same folder, renamed.

        The temporary file is created with the mode any new file gets (0666 less
        the umask), not ``mkstemp``'s private 0600: the report is for readers
        (a dashboard, a CI step) that may run as another user. A report written
        over an existing file keeps that file's mode: one restricted to its owner
        (it may hold captured parameters) stays so.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            kept_mode: int | None = stat.S_IMODE(target.stat().st_mode)
        except OSError:
            kept_mode = None
        while True:
            temporary = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:  # pragma: no cover - 48 random bits collided
                continue
        try:
            if kept_mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fd, kept_mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
                handle.write("\n")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Report:
        """Read a saved report; any problem is a one-line ``ReportError``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ReportError(f"report file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportError(f"cannot read report file {path}: {exc}") from None
        try:
            data = json.loads(text)
        except RecursionError:
            raise ReportError(f"{path} is not a sqlwatch report: JSON nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
            raise ReportError(f"{path} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except ReportError as exc:
            raise ReportError(f"{path}: {exc}") from None

    # -- combining ------------------------------------------------------------

    def merge(self, other: Report) -> Report:
        """One report covering both: counts add up, percentiles are recomputed."""
        start, duration = _merged_window(self, other)
        return Report(
            name=self.name if self.name == other.name else f"{self.name}+{other.name}",
            started_at=start,
            duration_ms=duration,
            query_count=self.query_count + other.query_count,
            total_query_ms=round(self.total_query_ms + other.total_query_ms, 4),
            operations=_add_counts(self.operations, other.operations),
            tables=_add_counts(self.tables, other.tables),
            statements=self.statements + other.statements,
            dropped_statements=self.dropped_statements + other.dropped_statements,
            fingerprints=_merge_fingerprints(self.fingerprints, other.fingerprints),
            slow_queries=self.slow_queries + other.slow_queries,
            n_plus_one=merge_n_plus_one(self.n_plus_one, other.n_plus_one),
            unused_eager_loads=_merge_unused(self.unused_eager_loads, other.unused_eager_loads),
            duplicates=_merge_duplicates(self.duplicates, other.duplicates),
            pools=_merge_pools(self.pools, other.pools),
            leaks=self.leaks + other.leaks,
            sessions=SessionStats(
                opened=self.sessions.opened + other.sessions.opened,
                closed=self.sessions.closed + other.sessions.closed,
                unclosed=self.sessions.unclosed + other.sessions.unclosed,
                unclosed_call_sites=self.sessions.unclosed_call_sites
                + other.sessions.unclosed_call_sites,
            ),
            resources=Resources(
                rss_start_bytes=self.resources.rss_start_bytes or other.resources.rss_start_bytes,
                rss_end_bytes=other.resources.rss_end_bytes or self.resources.rss_end_bytes,
                cpu_s=round(self.resources.cpu_s + other.resources.cpu_s, 6),
                rss_peak_bytes=max(self.resources.rss_peak_bytes, other.resources.rss_peak_bytes),
            ),
            errors=_add_counts(self.errors, other.errors),
            scopes=merge_scopes(self.scopes, other.scopes),
        )


class _Redactor:
    """Redacts the SQL texts of one report, each as the dialects it may be in.

    A statement names its engine: an instrumented engine's dialect is known, and
    an engine named by its URL (the default name) says its dialect in the URL's
    scheme. A duplicate or an N+1 finding names no engine: it takes the dialects
    of the report's statements with the same SQL, when the report kept all its
    statements (so none of another dialect can hide among the dropped ones).
    Anything else is ``None``, unknown: redacted as every dialect would lex it.
    """

    __slots__ = ("_by_sql", "_done", "_engines")

    def __init__(self, report: Report) -> None:
        import sys  # no engine is instrumented before sqlwatch._state is imported

        state = sys.modules.get("sqlwatch._state")
        trackers = list(state.STATE.trackers.values()) if state is not None else []
        self._engines: dict[str, str] = {t.name: t.info.dialect for t in trackers}
        self._done: dict[tuple[str, frozenset[str | None]], str] = {}
        self._by_sql: dict[str, set[str | None]] = {}
        if report.dropped_statements == 0:
            for statement in (*report.statements, *report.slow_queries):
                dialects = self._by_sql.setdefault(statement.sql, set())
                dialects.add(self.dialect_of(statement.engine))

    def dialect_of(self, engine: str) -> str | None:
        dialect = self._engines.get(engine)
        if dialect is not None:
            return dialect
        scheme, url, _ = engine.partition("://")
        backend = scheme.partition("+")[0]
        return backend if url and backend.isidentifier() else None

    def statement(self, sql: str, engine: str) -> str:
        return self._redact(sql, frozenset((self.dialect_of(engine),)))

    def finding(self, sql: str) -> str:
        """A duplicate's or an N+1 finding's SQL."""
        return self._redact(sql, frozenset(self._by_sql.get(sql) or (None,)))

    def _redact(self, sql: str, dialects: frozenset[str | None]) -> str:
        """Each distinct text once: a report repeats its statements."""
        key = (sql, dialects)
        done = self._done.get(key)
        if done is None:
            from sqlwatch._analysis import redact_literals_of_any

            done = self._done[key] = redact_literals_of_any(sql, dialects)
        return done


def _redact_statement(statement: Statement, redactor: _Redactor) -> Statement:
    if statement.params is not None:
        return statement
    sql = redactor.statement(statement.sql, statement.engine)
    return statement if sql == statement.sql else replace(statement, sql=sql)


def _redact_duplicate(duplicate: Duplicate, redactor: _Redactor) -> Duplicate:
    sql = redactor.finding(duplicate.sql)
    return duplicate if sql == duplicate.sql else replace(duplicate, sql=sql)


def _redact_finding(finding: NPlusOne, redactor: _Redactor) -> NPlusOne:
    sql = redactor.finding(finding.example_sql)
    return finding if sql == finding.example_sql else replace(finding, example_sql=sql)


def _parse_time(text: str) -> datetime | None:
    """A report's start; one without a time zone (written by hand or by another
    tool: sqlwatch writes ``Z``) is taken as UTC, so that two starts compare."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _merged_window(a: Report, b: Report) -> tuple[str, float]:
    start_a, start_b = _parse_time(a.started_at), _parse_time(b.started_at)
    if start_a is None or start_b is None:
        return a.started_at or b.started_at, max(a.duration_ms, b.duration_ms)
    start = min(start_a, start_b)
    end = max(
        start_a.timestamp() + a.duration_ms / 1e3,
        start_b.timestamp() + b.duration_ms / 1e3,
    )
    chosen = a.started_at if start == start_a else b.started_at
    return chosen, round((end - start.timestamp()) * 1e3, 4)


def _add_counts(a: Mapping[_K, int], b: Mapping[_K, int]) -> dict[_K, int]:
    merged = dict(a)
    for key, value in b.items():
        merged[key] = merged.get(key, 0) + value
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]))


def _merge_fingerprints(
    a: Iterable[FingerprintStats], b: Iterable[FingerprintStats]
) -> tuple[FingerprintStats, ...]:
    by_key: dict[str, FingerprintStats] = {}
    for stats in (*a, *b):
        seen = by_key.get(stats.fingerprint)
        by_key[stats.fingerprint] = stats if seen is None else _combine_stats(seen, stats)
    return tuple(sorted(by_key.values(), key=lambda s: -s.total_ms))


def _combine_stats(a: FingerprintStats, b: FingerprintStats) -> FingerprintStats:
    count = a.count + b.count
    total = round(a.total_ms + b.total_ms, 4)
    max_ms = max(a.max_ms, b.max_ms)
    sites, site_counts = _combine_sites(a, b)
    if a.histogram and b.histogram:
        histogram = LogHistogram(a.histogram, max_ns=int(a.max_ms * 1e6))
        histogram.merge(LogHistogram(b.histogram, max_ns=int(b.max_ms * 1e6)))
        p50, p95, p99 = (round(histogram.quantile_ns(q) / 1e6, 4) for q in (0.5, 0.95, 0.99))
        buckets = histogram.items()
    else:  # reports without histograms: the larger side's percentiles are the best guess
        larger = a if a.count >= b.count else b
        p50, p95, p99, buckets = larger.p50_ms, larger.p95_ms, larger.p99_ms, ()
    return replace(
        a,
        count=count,
        total_ms=total,
        mean_ms=round(total / count, 4) if count else 0.0,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=max_ms,
        call_sites=sites,
        histogram=buckets,
        call_site_counts=site_counts,
    )


def _combine_sites(
    a: FingerprintStats, b: FingerprintStats
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The most frequent call sites of both sides, by their counts; in order of
    appearance (and without counts) when a side's report predates the counts."""
    if any(len(side.call_site_counts) != len(side.call_sites) for side in (a, b)):
        return tuple(dict.fromkeys(a.call_sites + b.call_sites))[:REPORTED_CALL_SITES], ()
    counts: dict[str, int] = {}
    for site, n in (
        *zip(a.call_sites, a.call_site_counts, strict=True),
        *zip(b.call_sites, b.call_site_counts, strict=True),
    ):
        counts[site] = counts.get(site, 0) + n
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:REPORTED_CALL_SITES]
    return tuple(site for site, _ in ranked), tuple(n for _, n in ranked)


def merge_n_plus_one(a: Iterable[NPlusOne], b: Iterable[NPlusOne]) -> tuple[NPlusOne, ...]:
    """Findings of one loop (same fingerprint, call site, relationship) add up."""
    by_key: dict[tuple[str, str | None, str | None], NPlusOne] = {}
    for finding in (*a, *b):
        key = (finding.fingerprint, finding.call_site, finding.relationship)
        seen = by_key.get(key)
        by_key[key] = (
            finding
            if seen is None
            else replace(
                seen,
                count=seen.count + finding.count,
                total_ms=round(seen.total_ms + finding.total_ms, 4),
            )
        )
    return tuple(by_key.values())


def _merge_unused(
    a: Iterable[UnusedEagerLoad], b: Iterable[UnusedEagerLoad]
) -> tuple[UnusedEagerLoad, ...]:
    by_key: dict[tuple[str, str | None], UnusedEagerLoad] = {}
    for item in (*a, *b):
        key = (item.relationship, item.call_site)
        seen = by_key.get(key)
        by_key[key] = item if seen is None else replace(seen, count=seen.count + item.count)
    return tuple(by_key.values())


def _merge_duplicates(a: Iterable[Duplicate], b: Iterable[Duplicate]) -> tuple[Duplicate, ...]:
    by_sql: dict[str, Duplicate] = {}
    for item in (*a, *b):
        seen = by_sql.get(item.sql)
        by_sql[item.sql] = (
            item
            if seen is None
            else replace(
                seen,
                count=seen.count + item.count,
                call_sites=tuple(dict.fromkeys(seen.call_sites + item.call_sites)),
            )
        )
    return tuple(sorted(by_sql.values(), key=lambda d: -d.count))


def _merge_pools(a: Mapping[str, PoolStats], b: Mapping[str, PoolStats]) -> dict[str, PoolStats]:
    merged = dict(a)
    for name, stats in b.items():
        seen = merged.get(name)
        merged[name] = stats if seen is None else _combine_pools(seen, stats)
    return merged


def _combine_pools(a: PoolStats, b: PoolStats) -> PoolStats:
    def worst(x: Mapping[str, float], y: Mapping[str, float]) -> dict[str, float]:
        return {key: max(x.get(key, 0.0), y.get(key, 0.0)) for key in ("p50", "p95", "max")}

    return replace(
        a,
        checked_out=a.checked_out + b.checked_out,
        peak_checked_out=max(a.peak_checked_out, b.peak_checked_out),
        checkouts=a.checkouts + b.checkouts,
        checkins=a.checkins + b.checkins,
        connects=a.connects + b.connects,
        invalidations=a.invalidations + b.invalidations,
        timeouts=None
        if a.timeouts is None and b.timeouts is None
        else (a.timeouts or 0) + (b.timeouts or 0),
        wait_ms=worst(a.wait_ms, b.wait_ms),
        hold_ms=worst(a.hold_ms, b.hold_ms),
    )


def merge_scopes(a: Iterable[ScopeSummary], b: Iterable[ScopeSummary]) -> tuple[ScopeSummary, ...]:
    """Scopes of one name add up (their per-run percentiles take the worse side)."""
    by_name: dict[str, ScopeSummary] = {}
    for item in (*a, *b):
        seen = by_name.get(item.name)
        if seen is None:
            by_name[item.name] = item
            continue
        by_name[item.name] = replace(
            seen,
            runs=seen.runs + item.runs,
            query_count=seen.query_count + item.query_count,
            total_query_ms=round(seen.total_query_ms + item.total_query_ms, 4),
            duration_ms=round(seen.duration_ms + item.duration_ms, 4),
            queries_per_run={
                key: max(seen.queries_per_run.get(key, 0.0), item.queries_per_run.get(key, 0.0))
                for key in ("p50", "p95", "max")
            },
            n_plus_one=merge_n_plus_one(seen.n_plus_one, item.n_plus_one),
        )
    return tuple(by_name.values())
