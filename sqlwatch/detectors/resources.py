"""Peak RSS: registers the scope with the sampler while it is open.

Sampling itself is in ``sqlwatch._rss`` (rate-limited, at statement boundaries
and pool checkins); a registered scope's ``rss_peak`` rises with each sample,
and its report's ``resources.rss_peak_bytes`` is that peak, never below the RSS
at the scope's start and end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlwatch._rss import SAMPLER
from sqlwatch.detectors.base import Detector

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["RssPeak"]


class RssPeak(Detector):
    per_statement = False

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        # A scope without resource snapshots (a request's) reports no peak.
        self.active = scope.track_resources
        if self.active:
            SAMPLER.register(scope)

    def close(self) -> None:
        if self.active:
            SAMPLER.maybe_sample()
            SAMPLER.unregister(self.scope)
