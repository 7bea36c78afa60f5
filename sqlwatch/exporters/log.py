"""``LoggingExporter``: statements and findings on the ``sqlwatch`` logger.

Messages are one line a person reads (``slow query 812.4 ms SELECT users
(app/views.py:42 in list_users)``): the query summary, never the SQL itself, so
a log line never carries a literal value. The details travel as structured
data in ``extra={"sqlwatch": {...}}``, which ``JSONFormatter`` renders as one
JSON object a line. Bound parameters appear only with ``capture_params``.

A finding is logged once per scope: a slow query inside a loop of a thousand
iterations is one warning, not a thousand (the report keeps every one).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from sqlwatch.exporters.base import Exporter, StatementEvent
from sqlwatch.records import Leak, NPlusOne, Statement, record_to_dict, strict_jsonable

__all__ = ["JSONFormatter", "LoggingExporter"]

_DEBUG = logging.DEBUG
_MAX_KEYS = 10_000
"""Findings remembered for deduplication, all scopes together; past it, forgotten."""


class LoggingExporter(Exporter):
    """Each statement at DEBUG; slow queries, N+1 findings and leaks at WARNING.

    Every record carries ``extra={"sqlwatch": {...}}`` with the record's fields
    and a ``kind`` (``statement``, ``slow_query``, ``n_plus_one``, ``leak``).
    With the logger above DEBUG, a statement costs one ``isEnabledFor`` call.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("sqlwatch")
        self._lock = threading.Lock()
        self._seen: dict[str, dict[tuple[Any, ...], int]] = {}
        """scope name -> finding key -> times seen (the first one was logged)."""
        self._keys = 0
        self._last_slow: tuple[str, str, str] | None = None
        # Asked for every statement: the logger's own check, without a frame of ours.
        self.statement_enabled = functools.partial(  # type: ignore[method-assign]
            self.logger.isEnabledFor, _DEBUG
        )

    def statement_enabled(self) -> bool:
        return self.logger.isEnabledFor(_DEBUG)

    # -- hooks ------------------------------------------------------------------

    def on_statement(self, event: StatementEvent) -> None:
        statement = event.statement
        fields = statement_fields(statement, kind="statement")
        fields["summary"] = event.summary
        self.logger.debug(
            "%s %.1f ms%s%s",
            event.summary or statement.operation,
            statement.duration_ms,
            f" error {statement.error}" if statement.error else "",
            _where(statement.call_site),
            extra={"sqlwatch": fields},
        )

    def on_slow_query(self, statement: Statement, scope: str) -> None:
        # the process-wide scope and a watch may both report one statement
        identity = (statement.started_at, statement.fingerprint, statement.engine)
        if identity == self._last_slow:
            return
        self._last_slow = identity
        if not self._first(scope, ("slow_query", statement.fingerprint, statement.call_site)):
            return
        summary = summary_of(statement)
        fields = statement_fields(statement, kind="slow_query", scope=scope)
        fields["summary"] = summary
        self.logger.warning(
            "slow query %.1f ms %s%s",
            statement.duration_ms,
            summary,
            _where(statement.call_site),
            extra={"sqlwatch": fields},
        )

    def on_n_plus_one(self, finding: NPlusOne, scope: str) -> None:
        key = ("n_plus_one", finding.fingerprint, finding.relationship, finding.call_site)
        if not self._first(scope, key):
            return
        fields = record_to_dict(finding)
        fields.pop("example_sql", None)  # may hold literal values; ``normalized`` does not
        fields.update(kind="n_plus_one", scope=scope)
        what = finding.relationship or _summary_of_sql(finding.normalized, None)
        self.logger.warning(
            "N+1 %s: %d queries%s. %s",
            what,
            finding.count,
            _where(finding.call_site),
            finding.suggestion,
            extra={"sqlwatch": fields},
        )

    def on_leak(self, leak: Leak, scope: str) -> None:
        if not self._first(scope, ("leak", leak.engine, leak.kind, leak.call_site)):
            return
        fields = record_to_dict(leak)
        fields.update(kind="leak", scope=scope)
        self.logger.warning(
            "connection leak (%s) on %s, held %.1f ms%s",
            leak.kind,
            leak.engine,
            leak.held_ms,
            _where(leak.call_site),
            extra={"sqlwatch": fields},
        )

    def on_scope_end(self, report: Any) -> None:
        with self._lock:
            seen = self._seen.pop(report.name, None)
            if seen:
                self._keys -= len(seen)
        repeats = sum(seen.values()) - len(seen) if seen else 0
        if repeats:
            self.logger.info(
                "%d repeated warnings not logged in scope %s (see its report)",
                repeats,
                report.name,
                extra={"sqlwatch": {"kind": "suppressed", "scope": report.name, "count": repeats}},
            )

    # -- deduplication ----------------------------------------------------------

    def _first(self, scope: str, key: tuple[Any, ...]) -> bool:
        """Whether this is the first time ``key`` is seen in ``scope``."""
        with self._lock:
            seen = self._seen.get(scope)
            if seen is None:
                seen = self._seen[scope] = {}
            count = seen.get(key)
            if count is not None:
                seen[key] = count + 1
                return False
            if self._keys >= _MAX_KEYS:  # bounded memory: start over
                self._seen = {scope: seen} if len(seen) < _MAX_KEYS else {scope: {}}
                seen = self._seen[scope]
                self._keys = len(seen)
            seen[key] = 1
            self._keys += 1
            return True

    def __repr__(self) -> str:
        return f"LoggingExporter(logger={self.logger.name!r})"


def _where(call_site: str | None) -> str:
    return f" ({call_site})" if call_site else ""


def statement_fields(statement: Statement, **extra: Any) -> dict[str, Any]:
    """A statement's fields for a log record, with nothing the user did not opt into.

    ``sql`` is the text sent to the driver: it may hold literal values, so it is
    left out unless ``capture_params`` was on (then ``params`` is kept too);
    ``normalized`` says the same with every literal as ``?``.
    """
    fields = record_to_dict(statement)
    if statement.params is None:
        fields.pop("params", None)
        fields.pop("sql", None)
    fields.update(extra)
    return fields


def summary_of(statement: Statement) -> str:
    """The ``db.query.summary`` of a recorded statement (analysis is cached)."""
    return _summary_of_sql(statement.sql, statement.engine) or statement.operation


def _summary_of_sql(sql: str, engine: str | None) -> str:
    from sqlwatch._analysis import analyze
    from sqlwatch._state import STATE

    if engine is not None:
        for tracker in list(STATE.trackers.values()):
            if tracker.name == engine:
                return tracker.analyzer(sql).summary
    return analyze(sql).summary


# -- JSON lines ----------------------------------------------------------------

_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "sqlwatch",
}


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's data.

    ``sqlwatch`` records carry their fields under ``"sqlwatch"``; other ``extra``
    values of any record are kept under their own names, so one handler can
    format an application's whole log. Values JSON cannot hold become strings.

    ::

        handler = logging.StreamHandler()
        handler.setFormatter(sqlwatch.JSONFormatter())
        logging.getLogger("sqlwatch").addHandler(handler)
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "sqlwatch", None)
        if fields is not None:
            payload["sqlwatch"] = fields
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name not in payload:
                payload[name] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(strict_jsonable(payload), ensure_ascii=False, allow_nan=False)


def _iso_utc(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
