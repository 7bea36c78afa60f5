"""Exporters: where findings go. One module per exporter.

``exporters=`` options take exporter objects or names: ``"logging"``,
``"otel"``, ``"json:PATH"``. Named ``logging`` and ``otel`` exporters are
shared process-wide, so naming one in ``instrument()`` and in a ``watch()``
never emits a statement twice.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from sqlwatch.exporters.base import Exporter, StatementEvent

__all__ = [
    "EXPORTER_NAMES",
    "Exporter",
    "JSONExporter",
    "LoggingExporter",
    "OTelExporter",
    "StatementEvent",
    "resolve_exporters",
]

EXPORTER_NAMES = ("logging", "otel", "json:PATH")

_shared: dict[str, Exporter] = {}


def resolve_exporters(specs: Iterable[Any]) -> tuple[Exporter, ...]:
    """Exporter objects for an ``exporters=`` option; a bad entry is a ``ValueError``."""
    resolved: list[Exporter] = []
    for spec in specs:
        exporter = _resolve(spec)
        if exporter not in resolved:
            resolved.append(exporter)
    return tuple(resolved)


def _resolve(spec: Any) -> Exporter:
    if isinstance(spec, Exporter):
        return spec
    if not isinstance(spec, str):
        # Not duck-typed: sqlwatch calls every hook (and ``statement_enabled``) of
        # every exporter; an object with only some would fail on each statement.
        raise ValueError(
            f"exporter {spec!r} is neither an Exporter nor a name: subclass "
            "sqlwatch.exporters.Exporter (its hooks do nothing until overridden), "
            f"or use a name: {', '.join(EXPORTER_NAMES)}"
        )
    if spec.startswith("json:"):
        path = spec[len("json:") :]
        if not path:
            raise ValueError("exporter 'json:PATH' needs a path, e.g. 'json:sqlwatch.json'")
        from sqlwatch.exporters.json_report import JSONExporter

        return JSONExporter(path)
    if spec in ("logging", "otel"):
        shared = _shared.get(spec)
        if shared is None:
            shared = _shared[spec] = _named(spec)
        return shared
    raise ValueError(f"unknown exporter {spec!r}; valid names: {', '.join(EXPORTER_NAMES)}")


def _named(name: str) -> Exporter:
    if name == "logging":
        from sqlwatch.exporters.log import LoggingExporter

        return LoggingExporter()
    from sqlwatch.exporters.otel import OTelExporter

    return OTelExporter()


def reset_shared_exporters() -> None:
    """Forget the shared named exporters (tests; a new global OTel provider)."""
    _shared.clear()
    json_report = sys.modules.get("sqlwatch.exporters.json_report")
    if json_report is not None:
        json_report.reset()  # the exit hook that writes the process-wide report


def __getattr__(name: str) -> Any:
    # Exporter classes load on first use: importing sqlwatch stays light.
    if name == "LoggingExporter":
        from sqlwatch.exporters.log import LoggingExporter

        return LoggingExporter
    if name == "OTelExporter":
        from sqlwatch.exporters.otel import OTelExporter

        return OTelExporter
    if name == "JSONExporter":
        from sqlwatch.exporters.json_report import JSONExporter

        return JSONExporter
    raise AttributeError(f"module 'sqlwatch.exporters' has no attribute {name!r}")
