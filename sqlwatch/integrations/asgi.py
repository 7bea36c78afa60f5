"""``SQLWatchMiddleware`` for ASGI applications (Starlette, FastAPI, any ASGI app).

::

    from sqlwatch.integrations.asgi import SQLWatchMiddleware

    app = SQLWatchMiddleware(app)                # or app.add_middleware(SQLWatchMiddleware)

Every HTTP request runs in a watch named after its route template
(``"GET /users/{id}"``): Starlette and FastAPI record the matched route in the
ASGI scope, which the middleware reads when the response starts (a route they do
not record, or a request answered before routing, is looked up in the router's
routes); other applications are named by their path. Each response gets a
``Server-Timing`` header (``db;dur=<ms>;desc="<n> queries"``) counting the
statements run before the response started; the watch itself lasts until the
application returns, so a streamed body's statements count in the request's
report. Named watches add up per name in ``sqlwatch.report().scopes``: requests,
queries per request (p50, p95, max) and N+1 findings per endpoint.

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
    request_method,
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
        method = request_method(scope.get("method", "GET"))
        try:
            watch = RequestWatch(lambda: f"{method} {_route_name(scope)}", self._options)
            watch.__enter__()
        except Exception as exc:
            report_internal_error("ASGI middleware: opening the request's watch", exc)
            await self.app(scope, receive, send)
            return
        header = self._options.server_timing
        named = False

        def final_name() -> str:
            return f"{method} {_final_route_name(scope)}"

        async def send_with_timing(message: Message) -> None:
            nonlocal named
            if message["type"] == "http.response.start" and not named:
                named = True
                try:
                    watch.rename(final_name)
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
                    watch.rename(final_name)
                watch.__exit__(None, None, None)
            except Exception as exc:
                report_internal_error("ASGI middleware: closing the request's watch", exc)


def _route_name(scope: Scope) -> str:
    """The request's name while it runs: its path until a router has seen it."""
    template = route_template(scope)
    if template is not None:
        return template
    router = scope.get("router")
    if router is None:
        return str(scope.get("path", ""))
    return _chosen_route(scope, router)


def _final_route_name(scope: Scope) -> str:
    """The request's name once the application has answered. A Starlette or FastAPI
    application whose router never saw the request (a CORS preflight, a host or
    authentication middleware that answered first, an exception before routing)
    is named as its router would have routed it: never by the path, one name per
    URL."""
    template = route_template(scope)
    if template is not None:
        return template
    router = scope.get("router")
    if router is None:
        router = scope.get("app")
        if not isinstance(getattr(router, "routes", None), list):  # not Starlette's
            return str(scope.get("path", ""))
    return _chosen_route(scope, router)


def _chosen_route(scope: Scope, router: Any) -> str:
    """The template of the route ``router`` chooses for the request, else
    ``UNMATCHED``: for a request routed without a route in the scope (FastAPI
    records only its own routes, not a ``Mount``, static files or a Starlette
    ``Route``), or not routed at all. Only such requests pay for the lookup."""
    routes = getattr(router, "routes", None)
    if not isinstance(routes, list):
        return UNMATCHED
    request = dict(scope)  # a copy: a route's ``matches`` may write to it (FastAPI's do)
    if "app_root_path" in scope:  # a mount made the path relative to itself: undo it
        request["root_path"] = scope["app_root_path"]
    try:
        found = _match(routes, request, "", 0)
    except Exception:  # a custom route's ``matches`` failed: the router would fail too
        found = None
    return found[0] if found is not None else UNMATCHED


def _match(
    routes: Iterable[Any], scope: Scope, prefix: str, depth: int
) -> tuple[str, bool] | None:
    """The template of the route Starlette's router would match for ``scope``, and
    whether the match is full: the first full match (a mount's decides inside it),
    else the first partial one (a method the route does not allow)."""
    partial = None
    for route in routes:
        included = _included_routes(route)
        if included is not None:  # FastAPI's: match its routes as included
            found = (
                _match(included, scope, prefix, depth + 1) if depth < _MAX_MOUNT_DEPTH else None
            )
            if found is not None and found[1]:
                return found
            if found is not None and partial is None:
                partial = found[0]
            continue
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        match, child_scope = matches(scope)
        kind = getattr(match, "name", None)
        if kind == "FULL":
            children = getattr(route, "routes", None)
            if children and depth < _MAX_MOUNT_DEPTH:
                inner = _match(
                    children,
                    {**scope, **child_scope},
                    prefix + _mount_prefix(route),
                    depth + 1,
                )
                if inner is not None:
                    return inner[0], True
            path = _own_path(route)
            return None if path is None else (prefix + path, True)
        if kind == "PARTIAL" and partial is None:
            path = _own_path(route)
            partial = None if path is None else prefix + path
    return None if partial is None else (partial, False)


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
    route = _as_included(scope, route)
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


def _as_included(scope: Scope, route: Any) -> Any:
    """FastAPI includes routers lazily: ``scope["route"]`` is the route as declared,
    without the prefixes that ``include_router`` gave it (two inclusions of one
    router share it); the route as included, its full path known, is in FastAPI's
    own part of the scope."""
    state = scope.get("fastapi")
    if type(state) is not dict:
        return route
    included = state.get("effective_route_context")
    if included is None or getattr(included, "original_route", None) is not route:
        return route
    return included


def _included_routes(route: Any) -> list[Any] | None:
    """The routes of a FastAPI included router, as included: paths relative to the
    application, whatever ``include_router`` prefixes lie in between."""
    included = getattr(route, "effective_route_contexts", None)
    return list(included()) if callable(included) else None


def _own_path(route: Any) -> str | None:
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _find(routes: Iterable[Any], target: Any, prefix: str, depth: int) -> str | None:
    for route in routes:
        if route is target:
            path = _own_path(route)
            return None if path is None else prefix + path
        if depth >= _MAX_MOUNT_DEPTH:
            continue
        included = _included_routes(route)
        if included is not None:
            found = _find(included, target, prefix, depth + 1)
        else:
            children = getattr(route, "routes", None)
            if not children:
                continue
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
