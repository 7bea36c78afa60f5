"""Errors inside sqlwatch never reach the host application.

Every listener body runs under ``guarded()`` or calls ``report_internal_error``:
the error is logged on the ``sqlwatch`` logger, at most once a minute per
error site, and swallowed. Tests flip ``raise_internal_errors`` so that a
swallowed bug still fails the suite (sentry-python's habit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["guarded", "raise_internal_errors", "report_internal_error"]

logger = logging.getLogger("sqlwatch")

_RATE_LIMIT_S = 60.0
_MAX_SITES = 256
_last_logged: dict[str, float] = {}
_raise = False


def raise_internal_errors(enabled: bool) -> None:
    """Make internal errors propagate (for sqlwatch's own test suite only)."""
    global _raise
    _raise = enabled


def report_internal_error(where: str, exc: BaseException) -> None:
    """Log an internal error once per ``where`` per minute; re-raise in test mode."""
    if _raise:
        raise exc
    now = time.monotonic()
    last = _last_logged.get(where)
    if last is not None and now - last < _RATE_LIMIT_S:
        return
    if len(_last_logged) >= _MAX_SITES:
        _last_logged.clear()
    _last_logged[where] = now
    try:  # noqa: SIM105 - ``contextlib.suppress`` is a call, and may itself hit the limit
        logger.error(
            "sqlwatch internal error in %s (swallowed; your application is not affected)",
            where,
            exc_info=exc,
        )
    except Exception:
        # The report itself failed: a handler or filter on the ``sqlwatch`` logger
        # that raises, or the stack too deep to format it (an application near its
        # recursion limit). It runs in the application's call: nowhere is left to
        # tell, and raising here would break the call the guard protects.
        pass


@contextmanager
def guarded(where: str) -> Iterator[None]:
    """Run a block whose failure must not reach the application."""
    try:
        yield
    except Exception as exc:
        report_internal_error(where, exc)
