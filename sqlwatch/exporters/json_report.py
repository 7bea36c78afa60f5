"""``JSONExporter``: reports as JSON files, written atomically.

In a ``watch()`` (or any scope) the file is written when the scope ends. Given
to ``instrument()``, it holds the process-wide report: written at interpreter
exit, and whenever ``flush()`` is called. The file is replaced in one rename
(a temporary file in the same folder first), so a reader sees the old report
or the new one, never half of one.

A report file leaves the process, so it holds what ``Report.to_dict`` gives:
SQL that may carry literal values is normalized unless the user opted in (see
``Report.redacted``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from sqlwatch._guard import report_internal_error
from sqlwatch.exporters.base import Exporter
from sqlwatch.report import Report

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sqlwatch._capture.engine import EngineTracker

__all__ = ["JSONExporter"]


class JSONExporter(Exporter):
    """Write reports to ``path`` as JSON (see ``sqlwatch.Report.load`` to read them)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()
        """Made absolute now: a relative path names a file in the working directory
        of the moment the exporter is made, not of the moment of exit. A leading
        ``~`` is the home folder, as in a shell (``"json:~/reports/app.json"`` from
        a configuration file), never a folder named ``~``."""
        _install_engine_extension()

    def on_scope_end(self, report: Report) -> None:
        self.export(report)

    def export(self, report: Report | None = None) -> Path:
        """Write ``report`` now (by default the process-wide ``sqlwatch.report()``)."""
        if report is None:
            from sqlwatch.instrumentation import process_report

            report = process_report()
        return report.save(self.path)

    def flush(self) -> Path:
        """Write the process-wide report now, as exit will."""
        return self.export(None)

    def __repr__(self) -> str:
        return f"JSONExporter({str(self.path)!r})"


# -- the process-wide report at exit ------------------------------------------

_lock = threading.Lock()
_process_wide: weakref.WeakSet[JSONExporter] = weakref.WeakSet()
"""Exporters given to ``instrument()``: they write ``sqlwatch.report()`` at exit."""
_atexit_registered = False
_extension_installed = False


def _install_engine_extension() -> None:
    global _extension_installed
    if _extension_installed:
        return
    from sqlwatch.instrumentation import ENGINE_EXTENSIONS

    with _lock:
        if not _extension_installed:
            ENGINE_EXTENSIONS.append(_on_instrument)
            _extension_installed = True


def _on_instrument(tracker: EngineTracker, engine: Engine) -> None:
    """An engine was instrumented: its JSON exporters hold the process-wide report."""
    global _atexit_registered
    exporters = [e for e in tracker.exporters if isinstance(e, JSONExporter)]
    if not exporters:
        return
    with _lock:
        _process_wide.update(exporters)
        if not _atexit_registered:
            atexit.register(_write_at_exit)
            _atexit_registered = True


def _write_at_exit() -> None:
    written: set[Path] = set()
    for exporter in list(_process_wide):
        try:
            target = exporter.path.resolve()  # a symlink loop raises: skip only this one
            if target in written:
                continue  # "json:PATH" on several engines: one file, one write
            written.add(target)
            exporter.flush()
        except Exception as exc:  # at exit, nothing may raise into the interpreter
            with contextlib.suppress(Exception):
                report_internal_error("JSONExporter at exit", exc)


def reset() -> None:
    """Forget the process-wide exporters and the exit hook (``sqlwatch.reset()``)."""
    global _atexit_registered
    with _lock:
        _process_wide.clear()
        if _atexit_registered:
            atexit.unregister(_write_at_exit)
            _atexit_registered = False
