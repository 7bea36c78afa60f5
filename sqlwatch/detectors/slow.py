"""Slow queries: statements at or over ``slow_query_ms``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlwatch._capture.execution import Execution
from sqlwatch.detectors.base import Detector

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["SlowQueries"]


class SlowQueries(Detector):
    """Keeps the first ``max_statements`` slow statements and tells the exporters."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self.limit = max(scope.options.max_statements, 1)
        self.process_wide = scope.process_wide
        self.threshold_ns = scope.options.slow_query_ms * 1e6
        self.found: list[Execution] = []

    def batch(self, executions: list[Execution]) -> None:
        threshold_ns = self.threshold_ns
        if self.process_wide:
            for execution in executions:
                if execution.duration_ns >= execution.tracker.slow_ns:
                    self(execution)
        else:
            for execution in executions:
                if execution.duration_ns >= threshold_ns:
                    self(execution)

    def __call__(self, execution: Execution) -> None:
        # the process-wide scope judges each statement by its engine's options
        threshold_ns = execution.tracker.slow_ns if self.process_wide else self.threshold_ns
        if execution.duration_ns < threshold_ns:
            return
        if len(self.found) < self.limit:
            self.found.append(execution)
        if self.scope.has_exporters(execution.tracker):
            self.scope.emit("on_slow_query", self.scope.statement(execution), execution.tracker)

    def contribute(self, fields: dict[str, Any]) -> None:
        fields["slow_queries"] = tuple(self.scope.statement(e) for e in self.found)
