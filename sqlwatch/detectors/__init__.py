"""Detectors: one module per finding. ``DETECTORS`` is the pipeline, in order."""

from __future__ import annotations

from sqlwatch.detectors.base import Detector
from sqlwatch.detectors.duplicates import Duplicates
from sqlwatch.detectors.slow import SlowQueries

__all__ = ["DETECTORS", "Detector"]

DETECTORS: tuple[type[Detector], ...] = (
    SlowQueries,
    Duplicates,
)
