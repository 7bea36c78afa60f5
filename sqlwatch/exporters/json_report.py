"""``JSONExporter``: the scope's report, written atomically when the scope ends."""

from __future__ import annotations

import os
from pathlib import Path

from sqlwatch.exporters.base import Exporter
from sqlwatch.report import Report

__all__ = ["JSONExporter"]


class JSONExporter(Exporter):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_scope_end(self, report: Report) -> None:
        report.save(self.path)

    def __repr__(self) -> str:
        return f"JSONExporter({str(self.path)!r})"
