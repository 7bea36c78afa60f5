"""What every detector is: per-scope state fed one statement at a time.

A detector is created by its scope, configured from the scope's options in
``__init__``, fed each statement in ``__call__`` or each batch in ``batch`` (under the
scope's lock), and
asked at report time to ``contribute`` its fields. Detectors with no interest
in statements (leaks come from pool events) set ``per_statement = False`` and
cost nothing on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlwatch._capture.execution import Execution
    from sqlwatch.scope import Scope

__all__ = ["Detector"]


class Detector:
    per_statement = True
    contributes_n_plus_one = False
    """Whether ``contribute`` fills ``n_plus_one``: the one field an enclosing
    scope keeps of a closed one (``Scope.run_summary``)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __call__(self, execution: Execution) -> None:
        """One statement of the scope (the scope's lock is held)."""

    def batch(self, executions: list[Execution]) -> None:
        """Statements in the order they ran (the scope's lock is held).

        Override it instead of ``__call__`` where a loop of your own saves the
        per-statement call: the pipeline hands statements over in batches.
        """
        for execution in executions:
            self(execution)

    def close(self) -> None:
        """The scope is ending: last chance to look at the world (lock not held)."""

    def contribute(self, fields: dict[str, Any]) -> None:
        """Fill this detector's report fields (the scope's lock is held)."""
