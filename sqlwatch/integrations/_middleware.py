"""What the ASGI and WSGI middlewares share: options, the per-request watch, the header.

A request's watch is built for speed: its options are validated once, when the
middleware is created, and it takes no psutil snapshots (two ``/proc`` reads per
request would cost more than everything else the middleware does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypedDict

from sqlwatch._context import current_chain, push_scope
from sqlwatch.config import OPTION_NAMES, Options
from sqlwatch.exporters import resolve_exporters
from sqlwatch.watch import WATCH_DEFAULTS, Watch, _engine_ids

__all__ = [
    "MIDDLEWARE_OPTIONS",
    "OTHER_METHOD",
    "REQUEST_DEFAULTS",
    "UNMATCHED",
    "RequestWatch",
    "WatchOptions",
    "parse_options",
    "request_method",
    "server_timing",
]

MIDDLEWARE_OPTIONS = frozenset({"server_timing", "engines"})


class WatchOptions(TypedDict, total=False):
    """The ``watch()`` options, typed for ``**options: Unpack[WatchOptions]``: type
    checkers then check the keywords of ``SQLWatchMiddleware(app, ...)`` and of
    Starlette's ``app.add_middleware(SQLWatchMiddleware, ...)`` (a bare ``**options:
    Any`` defeats the latter's ``ParamSpec``). A test keeps it in step with ``Options``."""

    slow_query_ms: float
    n_plus_one_threshold: int
    capture_params: bool
    capture_call_sites: bool
    max_statements: int
    leak_threshold_s: float
    detect_unused_eager_loads: bool
    ignore: Sequence[str]
    span_min_duration_ms: float
    sqlcommenter: bool
    exporters: Sequence[Any]


REQUEST_DEFAULTS: dict[str, Any] = {**WATCH_DEFAULTS, "detect_unused_eager_loads": False}
"""``watch()``'s defaults, except what costs on every request in production: unused
eager loads are off, as in ``instrument()``'s process-wide scope (pass ``True``)."""

UNMATCHED = "(unmatched)"
"""The route name of a request the framework routed but found no route for: one
name for every 404, so that scanners probing random URLs cannot fill the report
with one entry per URL."""


KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
OTHER_METHOD = "_OTHER"
"""The method part of the name of a request whose method is none of ``KNOWN_METHODS``
(as OpenTelemetry's ``http.request.method`` does): any token is a valid method, and
a client sending made-up ones must not make one endpoint each."""


def request_method(method: object) -> str:
    return method if isinstance(method, str) and method in KNOWN_METHODS else OTHER_METHOD


class MiddlewareOptions:
    __slots__ = ("engine_ids", "server_timing", "watch_options")

    def __init__(
        self, server_timing: bool, engine_ids: frozenset[int] | None, watch_options: Options
    ) -> None:
        self.server_timing = server_timing
        self.engine_ids = engine_ids
        self.watch_options = watch_options


def parse_options(
    kind: str, server_timing: object, engines: Iterable[Any] | None, options: WatchOptions
) -> MiddlewareOptions:
    """Validate the middleware's own options and the watch options, once."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        valid = ", ".join(sorted(OPTION_NAMES | MIDDLEWARE_OPTIONS))
        raise TypeError(
            f"unknown option {unknown[0]!r} for sqlwatch's {kind} SQLWatchMiddleware; "
            f"valid options: {valid}"
        )
    if not isinstance(server_timing, bool):
        raise ValueError(f"option 'server_timing' must be True or False, got {server_timing!r}")
    watch_options = Options.from_kwargs(dict(options), **REQUEST_DEFAULTS)
    if watch_options.exporters:
        # resolved now, as ``watch()`` does: a misspelt name fails here, not on every
        # request (where it would be swallowed and leave every request unwatched),
        # and each request shares the same exporter objects
        watch_options = watch_options.replace(exporters=resolve_exporters(watch_options.exporters))
    return MiddlewareOptions(server_timing, _engine_ids(engines), watch_options)


class RequestWatch(Watch):
    """One request's watch. It can step out of the current context and back in:
    a WSGI body may be iterated after the application returned, even in another
    context, and its statements still belong to the request."""

    _track_resources = False

    def __init__(
        self, naming: Callable[[], str], options: MiddlewareOptions
    ) -> None:  # no re-validation
        self.name = naming()
        self.options = options.watch_options
        self._engine_ids = options.engine_ids
        self._naming = naming
        self._scope = None
        self._token = None

    def __enter__(self) -> RequestWatch:
        super().__enter__()
        self._unit = current_chain.get().unit
        if self._scope is not None:
            self._scope.naming = self._naming
        return self

    def rename(self, naming: Callable[[], str] | None = None) -> None:
        """The route template is known only once the framework has routed the
        request: ``naming`` says the path until then, the template after (and a
        finding reported in between already goes out under the template). Called
        once the response starts, it fixes the name: a framework may forget its
        route when the application returns (Flask), before a body is iterated.
        ``naming`` replaces the running one for this last time (it may cost more)."""
        name = self.name = (naming or self._naming)()
        scope = self._scope
        if scope is not None:
            scope.name = name
            scope.naming = None

    def totals(self) -> tuple[int, int]:
        scope = self._scope
        return scope.totals() if scope is not None else (0, 0)

    def suspend(self) -> None:
        self._step_out()

    def resume(self) -> None:
        """Step back in, as part of the request's unit of work (``_unit``): the
        process-wide scope judges an N+1 spread over a streamed body's chunks as it
        would the same loop run before the response."""
        scope = self._scope
        if scope is not None and self._token is None and not scope.closed:
            self._token = push_scope(scope, self._unit)

    def finish(self) -> None:
        """Close, whether the watch is suspended or not (idempotent)."""
        self._finish()


def server_timing(count: int, total_ns: int) -> str:
    """The ``Server-Timing`` entry: ``db;dur=<ms>;desc="<n> queries"``."""
    return f'db;dur={total_ns / 1e6:.3f};desc="{count} queries"'
