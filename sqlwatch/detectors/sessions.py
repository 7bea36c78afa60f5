"""ORM sessions opened, closed and left open in a scope.

The counting is in ``sqlwatch._capture.sessions`` (what "opened" and "closed"
mean for a ``Session``, which has neither event); this detector gives each
scope its counts and reports them as ``sessions``. When the scope closes, the
sessions it opened that still hold a transaction or objects are ``unclosed``,
with where each was first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlwatch._capture.sessions import SESSION_KEY, SessionCounts
from sqlwatch._state import STATE
from sqlwatch.detectors.base import Detector

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["Sessions"]


class Sessions(Detector):
    per_statement = False

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self.counts = SessionCounts(scope)
        scope.extensions[SESSION_KEY] = self.counts

    def close(self) -> None:
        STATE.sessions.stats(self.counts, final=True)

    def contribute(self, fields: dict[str, Any]) -> None:
        stats = STATE.sessions.stats(self.counts, final=False)
        if stats.opened or stats.unclosed:
            fields["sessions"] = stats
