"""Append the current trace context to a statement as a trailing SQL comment.

The sqlcommenter format (``/*traceparent='00-<trace>-<span>-01'*/``) lets a
database's own logs (``pg_stat_activity``, slow-query logs, ``log_statement``)
be joined to the trace. It is off by default (the ``sqlcommenter`` option):
it makes every statement text unique, which defeats server-side statement
caches on some databases (MySQL prepared statements, Oracle, SQL Server).

Only the W3C ``traceparent`` is written, whatever propagator is configured:
it is what database tooling understands, and it is hex digits and dashes only,
so it needs no escaping for any driver's parameter style (a URL-encoded
``tracestate`` would put ``%`` into ``pyformat`` SQL). The span it names is the
one current when the statement ran: the parent of sqlwatch's statement span.

The text sqlwatch records and analyzes is the statement without the comment,
so fingerprints, duplicates and N+1 detection are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["traceparent_comment", "with_traceparent"]

_get_current_span: Callable[[], Any] | None = None


def _load() -> Callable[[], Any]:
    # opentelemetry loads on first use: importing sqlwatch stays light
    global _get_current_span
    from opentelemetry.trace import get_current_span

    _get_current_span = get_current_span
    return get_current_span


def traceparent_comment() -> str | None:
    """``/*traceparent='...'*/`` for the current span, or ``None`` without a valid one."""
    get_current_span = _get_current_span or _load()
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return (
        f"/*traceparent='00-{context.trace_id:032x}-{context.span_id:016x}-"
        f"{int(context.trace_flags) & 0xFF:02x}'*/"
    )


def with_traceparent(sql: str) -> str:
    """``sql`` with the comment appended (before a final ``;``, which some drivers
    require to end the text); unchanged when no span is current."""
    comment = traceparent_comment()
    if comment is None:
        return sql
    stripped = sql.rstrip()
    if stripped.endswith(";"):
        return f"{stripped[:-1]} {comment};"
    return f"{sql} {comment}"
