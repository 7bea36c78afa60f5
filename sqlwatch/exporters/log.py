"""``LoggingExporter``: statements and findings on the ``sqlwatch`` logger."""

from __future__ import annotations

import logging
from typing import Any

from sqlwatch.exporters.base import Exporter, StatementEvent
from sqlwatch.records import Leak, NPlusOne, Statement, record_to_dict

__all__ = ["JSONFormatter", "LoggingExporter"]


class LoggingExporter(Exporter):
    """Each statement at DEBUG; slow queries, N+1 findings and leaks at WARNING.

    Every record carries ``extra={"sqlwatch": {...}}`` with the finding's fields.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("sqlwatch")

    def statement_enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)

    def on_statement(self, event: StatementEvent) -> None:
        statement = event.statement
        self.logger.debug(
            "%s %.1f ms %s",
            statement.operation,
            statement.duration_ms,
            statement.normalized,
            extra={"sqlwatch": _fields(statement, kind="statement")},
        )

    def on_slow_query(self, statement: Statement, scope: str) -> None:
        self.logger.warning(
            "slow query %.1f ms %s%s",
            statement.duration_ms,
            statement.normalized,
            _where(statement.call_site),
            extra={"sqlwatch": _fields(statement, kind="slow_query", scope=scope)},
        )

    def on_n_plus_one(self, finding: NPlusOne, scope: str) -> None:
        self.logger.warning(
            "N+1 %s: %d queries%s. %s",
            finding.relationship or finding.normalized,
            finding.count,
            _where(finding.call_site),
            finding.suggestion,
            extra={"sqlwatch": _fields(finding, kind="n_plus_one", scope=scope)},
        )

    def on_leak(self, leak: Leak, scope: str) -> None:
        self.logger.warning(
            "connection leak (%s) on %s, held %.1f ms%s",
            leak.kind,
            leak.engine,
            leak.held_ms,
            _where(leak.call_site),
            extra={"sqlwatch": _fields(leak, kind="leak", scope=scope)},
        )


def _where(call_site: str | None) -> str:
    return f" ({call_site})" if call_site else ""


def _fields(record: Any, **extra: Any) -> dict[str, Any]:
    fields = record_to_dict(record)
    fields.pop("params", None)  # bound parameters never leave the process by default
    fields.update(extra)
    return fields


class JSONFormatter(logging.Formatter):
    """One JSON object a line: the message, level, logger and the ``sqlwatch`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        payload: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "sqlwatch", None)
        if fields is not None:
            payload["sqlwatch"] = fields
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
