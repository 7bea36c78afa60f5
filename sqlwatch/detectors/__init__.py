"""Detectors: one module per finding. ``DETECTORS`` is the pipeline, in order."""

from __future__ import annotations

from sqlwatch.detectors.base import Detector
from sqlwatch.detectors.duplicates import Duplicates
from sqlwatch.detectors.leaks import Leaks
from sqlwatch.detectors.n_plus_one import NPlusOneDetector
from sqlwatch.detectors.resources import RssPeak
from sqlwatch.detectors.sessions import Sessions
from sqlwatch.detectors.slow import SlowQueries
from sqlwatch.detectors.unused_eager_loads import UnusedEagerLoads

__all__ = ["DETECTORS", "Detector"]

DETECTORS: tuple[type[Detector], ...] = (
    SlowQueries,
    Duplicates,
    NPlusOneDetector,
    UnusedEagerLoads,
    Leaks,
    Sessions,
    RssPeak,
)
