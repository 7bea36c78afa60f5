"""``SQLWatchMiddleware`` for ASGI applications (Starlette, FastAPI, any ASGI app).

::

    from sqlwatch.integrations.asgi import SQLWatchMiddleware

    app = SQLWatchMiddleware(app)                # or app.add_middleware(SQLWatchMiddleware)

Every HTTP request runs in a watch named after its route template
(``"GET /users/{id}"``): Starlette and FastAPI record the matched route in the
ASGI scope, which the middleware reads when the response starts; other
applications are named by their path. Each response gets a ``Server-Timing``
header (``db;dur=<ms>;desc="<n> queries"``) counting the statements run before
the response started; the watch itself lasts until the application returns, so
a streamed body's statements count in the request's report. Named watches add
up per name in ``sqlwatch.report().scopes``: requests, queries per request
(p50, p95, max) and N+1 findings per endpoint.

Pure ASGI: no framework is imported. WebSocket and lifespan traffic passes
through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from sqlwatch._guard import report_internal_error
from sqlwatch.integrations._middleware import (
    UNMATCHED,
    RequestWatch,
    WatchOptions,
    parse_options,
    server_timing,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SQLWatchMiddleware", "route_template"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_CACHED_ROUTES = 4096
_MAX_MOUNT_DEPTH = 16
_templates: dict[int, tuple[Any, str]] = {}
"""Route object id -> (the route, its full template): routes live as long as the app."""


class SQLWatchMiddleware:
    """A watch per HTTP request, named ``"<METHOD> <route template>"``.

    Options: ``server_timing`` (default ``True``) adds the ``Server-Timing``
    header; ``engines`` narrows the watch to some engines, as in ``watch()``;
    every other keyword is a ``watch()`` option, validated here, once.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        server_timing: bool = True,
        engines: Iterable[Any] | None = None,
        **options: Unpack[WatchOptions],
    ) -> None:
        self.app = app
        self._options = parse_options("ASGI", server_timing, engines, options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        try:
            watch = RequestWatch(lambda: f"{method} {_route_name(scope)}", self._options)
            watch.__enter__()
        except Exception as exc:
            report_internal_error("ASGI middleware: opening the request's watch", exc)
            await self.app(scope, receive, send)
            return
        header = self._options.server_timing
        named = False

        async def send_with_timing(message: Message) -> None:
            nonlocal named
            if message["type"] == "http.response.start" and not named:
                named = True
                try:
                    watch.rename()
                    if header:
                        count, total_ns = watch.totals()
                        message = {
                            **message,
                            "headers": [
                                *message.get("headers", ()),
                                (b"server-timing", server_timing(count, total_ns).encode()),
                            ],
                        }
                except Exception as exc:
                    report_internal_error("ASGI middleware: response start", exc)
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            try:
                if not named:  # no response started (the app raised): routed all the same
                    watch.rename()
                watch.__exit__(None, None, None)
            except Exception as exc:
                report_internal_error("ASGI middleware: closing the request's watch", exc)


def _route_name(scope: Scope) -> str:
    template = route_template(scope)
    if template is not None:
        return template
    if "router" in scope:  # a Starlette router saw the request and matched no route
        return UNMATCHED
    return str(scope.get("path", ""))


def route_template(scope: Scope) -> str | None:
    """The matched route's template (``/users/{id}``), mounts included, or ``None``.

    Starlette and FastAPI put the matched route in ``scope["route"]``; behind a
    ``Mount`` that route's path is relative to the mount, so the full template
    is found by walking the router's tree once per route (then cached).
    """
    route = scope.get("route")
    if route is None:
        return None
    if isinstance(route, str):
        return route
    cached = _templates.get(id(route))
    if cached is not None and cached[0] is route:
        return cached[1]
    template = _find(getattr(scope.get("router"), "routes", None) or (), route, "", 0)
    if template is None:
        template = _own_path(route)
        if template is None:
            return None
    if len(_templates) >= _MAX_CACHED_ROUTES:
        _templates.clear()
    _templates[id(route)] = (route, template)
    return template


def _own_path(route: Any) -> str | None:
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _find(routes: Iterable[Any], target: Any, prefix: str, depth: int) -> str | None:
    for route in routes:
        if route is target:
            path = _own_path(route)
            return None if path is None else prefix + path
        children = getattr(route, "routes", None)
        if children and depth < _MAX_MOUNT_DEPTH:
            found = _find(children, target, prefix + _mount_prefix(route), depth + 1)
            if found is not None:
                return found
    return None


def _mount_prefix(route: Any) -> str:
    """A ``Mount``'s own part of the path: its ``path_format`` without ``/{path}``."""
    path = _own_path(route)
    if path is None or getattr(route, "host_format", None) is not None:
        return ""  # a Host route matches on the host name, not the path
    return path.removesuffix("/{path}")
