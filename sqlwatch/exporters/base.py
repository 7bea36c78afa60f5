"""What an exporter is: a small class with one job, and hooks it may override.

Every hook runs in the application's thread, right where the event happened
(so an OpenTelemetry span finds its parent as the current span). A hook that
raises is logged and skipped; it never stops the other exporters or the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlwatch._capture.execution import Execution, perf_to_epoch_ns, to_statement
from sqlwatch.records import EngineInfo, Leak, NPlusOne, Statement, StatementInfo

if TYPE_CHECKING:
    from sqlwatch.report import Report

__all__ = ["Exporter", "StatementEvent"]


class StatementEvent:
    """One executed statement, as per-statement exporters see it.

    Building the public ``Statement`` costs a few microseconds, so it is made on
    first access and shared by every exporter.
    """

    __slots__ = ("_execution", "_statement", "_with_params")

    def __init__(self, execution: Execution, *, with_params: bool) -> None:
        self._execution = execution
        self._with_params = with_params
        self._statement: Statement | None = None

    @property
    def statement(self) -> Statement:
        """The public record; ``params`` only where the exporter's configuration
        has ``capture_params``."""
        if self._statement is None:
            self._statement = to_statement(self._execution, with_params=self._with_params)
        return self._statement

    @property
    def info(self) -> StatementInfo:
        """Operation, tables, fingerprint, normalized SQL and summary."""
        return self._execution.info

    @property
    def engine(self) -> EngineInfo:
        return self._execution.tracker.info

    @property
    def start_time_ns(self) -> int:
        """Start of the cursor call, nanoseconds since the epoch."""
        return perf_to_epoch_ns(self._execution.start_ns)

    @property
    def end_time_ns(self) -> int:
        return perf_to_epoch_ns(self._execution.start_ns + self._execution.duration_ns)

    @property
    def duration_ns(self) -> int:
        return self._execution.duration_ns

    @property
    def summary(self) -> str:
        """The OpenTelemetry ``db.query.summary`` (``SELECT orders users``)."""
        return self._execution.info.summary

    @property
    def batch_size(self) -> int:
        return self._execution.batch_size

    @property
    def error_type(self) -> type[BaseException] | None:
        return self._execution.error

    @property
    def rowcount(self) -> int | None:
        return self._execution.rowcount

    @property
    def call_site(self) -> str | None:
        return self._execution.call_site_text


class Exporter:
    """Base class of exporters. Override the hooks you need; the rest do nothing."""

    timely_findings: bool = False
    """Whether N+1 findings must reach ``on_n_plus_one`` while the code that caused
    them is still running (an OpenTelemetry event belongs on the span current
    then). Otherwise sqlwatch may report them when it next processes its batch
    of statements, at the latest when the scope closes: cheaper for ORM loops.
    Read at each lazy load, so a property may say whether it matters right now;
    once every scope of the statement has reported the loop, its later loads are
    batched whatever it says."""

    def statement_enabled(self) -> bool:
        """Whether ``on_statement`` wants this statement; checked per statement,
        so keep it to a flag or ``logger.isEnabledFor``."""
        return False

    def on_statement(self, event: StatementEvent) -> None:
        """A statement finished (successfully or not)."""

    def on_slow_query(self, statement: Statement, scope: str) -> None:
        """A statement at or over ``slow_query_ms``."""

    def on_n_plus_one(self, finding: NPlusOne, scope: str) -> None:
        """An N+1 crossed the threshold (once per finding per scope)."""

    def on_leak(self, leak: Leak, scope: str) -> None:
        """A connection leak was found."""

    def on_scope_end(self, report: Report) -> None:
        """A scope closed; ``report`` is final."""
