"""Append the current trace context to a statement as a trailing SQL comment.

The sqlcommenter format (``/*traceparent='00-<trace>-<span>-01'*/``) lets a
database's own logs (pg_stat_statements, slow-query logs) be joined to the
trace. It is off by default: it makes every statement text unique, which
defeats server-side statement caches on some databases.
"""

from __future__ import annotations

__all__ = ["with_traceparent"]


def with_traceparent(sql: str) -> str:
    from opentelemetry import trace  # imported on first use: sqlwatch imports light

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return sql
    flags = int(context.trace_flags)
    return f"{sql} /*traceparent='00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}'*/"
