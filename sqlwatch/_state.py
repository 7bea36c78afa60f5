"""All of sqlwatch's process-wide state, in one place, with ``reset()``.

The instrumented engines (by ``id`` of the sync engine), the statement
pipeline with the process-wide scope, and the shared ORM listener. Tests call
``sqlwatch.reset()`` to start from nothing (structlog's ``reset_defaults``).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from sqlwatch._capture.orm import OrmHooks
from sqlwatch._capture.sessions import SessionListener
from sqlwatch._guard import report_internal_error
from sqlwatch._pipeline import PIPELINE, process
from sqlwatch.exporters.base import StatementEvent

if TYPE_CHECKING:
    from sqlwatch._capture.engine import EngineTracker
    from sqlwatch._capture.execution import Execution, RawExecution

__all__ = ["STATE", "export_statement"]


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.trackers: dict[int, EngineTracker] = {}
        self.pipeline = PIPELINE
        self.orm = OrmHooks()
        self.sessions = SessionListener()


STATE = _State()


def _renew_locks_in_child() -> None:
    """A child forked while another thread of the parent held one of these locks
    (instrumenting, ending a session's transaction, creating an analyzer) would
    wait for it for ever: that thread does not exist in the child. (The pipeline,
    the pool trackers and the RSS sampler renew their own.)"""
    from sqlwatch._analysis import _analyzer
    from sqlwatch.detectors import unused_eager_loads
    from sqlwatch.exporters import json_report

    STATE.lock = threading.RLock()
    STATE.sessions.lock = threading.RLock()
    _analyzer._creating = threading.Lock()
    unused_eager_loads._lock = threading.RLock()
    json_report._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_renew_locks_in_child)


def export_statement(
    raw: RawExecution, exporters: tuple[Any, ...], with_params: tuple[Any, ...] = ()
) -> None:
    """Give one statement to the per-statement exporters, in the app's thread;
    bound parameters only to the exporters in ``with_params``.

    Runs for every statement of an engine with exporters: an ``import`` here
    would cost more than an exporter's whole ``statement_enabled()`` check.
    """
    execution: Execution | None = None
    events: dict[bool, StatementEvent] = {}
    for exporter in exporters:
        try:
            if exporter.statement_enabled():
                if execution is None:
                    execution = process(raw)
                keep = bool(with_params) and any(exporter is e for e in with_params)
                event = events.get(keep)
                if event is None:
                    event = events[keep] = StatementEvent(execution, with_params=keep)
                exporter.on_statement(event)
        except Exception as exc:
            report_internal_error(f"exporter {type(exporter).__name__}.on_statement", exc)
