"""``SQLWatchMiddleware`` for WSGI applications (Flask, any WSGI app).

::

    from sqlwatch.integrations.wsgi import SQLWatchMiddleware

    app.wsgi_app = SQLWatchMiddleware(app.wsgi_app)      # Flask
    application = SQLWatchMiddleware(application)        # any WSGI callable

Every request runs in a watch named after its route template: Flask's matched
rule (``/users/<int:id>`` becomes ``"GET /users/{id}"``, the same shape as
Starlette's), read from the request object that Werkzeug leaves in the environ;
other applications are named by their path. ``start_response`` gets a
``Server-Timing`` header (``db;dur=<ms>;desc="<n> queries"``) counting the
statements run so far.

A WSGI body may be produced after the application returns (a generator). The
watch steps out of the server's context when the application returns and back
in around each chunk, and closes when the body is exhausted or closed (PEP 3333
servers always close it), so a streamed body's statements count in the request
and nothing leaks into the code that runs between requests. A body returned as
a list is complete: the watch closes at once. A test client that neither reads
nor closes a response leaves that request out of ``sqlwatch.report()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlwatch._guard import report_internal_error
from sqlwatch.integrations._middleware import (
    UNMATCHED,
    MiddlewareOptions,
    RequestWatch,
    WatchOptions,
    parse_options,
    request_method,
    server_timing,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SQLWatchMiddleware", "route_template"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_CONVERTER = re.compile(r"<(?:[^<>]*:)?([A-Za-z_]\w*)>")
_MAX_CACHED_RULES = 4096
_templates: dict[str, str] = {}


class SQLWatchMiddleware:
    """A watch per request, named ``"<METHOD> <route template>"``.

    Options: ``server_timing`` (default ``True``) adds the ``Server-Timing``
    header; ``engines`` narrows the watch to some engines, as in ``watch()``;
    every other keyword is a ``watch()`` option, validated here, once.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        server_timing: bool = True,
        engines: Iterable[Any] | None = None,
        **options: Unpack[WatchOptions],
    ) -> None:
        self.app = app
        self._options = parse_options("WSGI", server_timing, engines, options)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = _Request(environ, self._options)
        except Exception as exc:
            report_internal_error("WSGI middleware: opening the request's watch", exc)
            return self.app(environ, start_response)
        header = self._options.server_timing

        def start_with_timing(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Any:
            try:
                request.name()
                if header:
                    count, total_ns = request.watch.totals()
                    headers = [*headers, ("Server-Timing", server_timing(count, total_ns))]
            except Exception as exc:
                report_internal_error("WSGI middleware: start_response", exc)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start_with_timing)
        except BaseException:
            request.finish()
            raise
        if type(body) is list or type(body) is tuple or _is_file(body, environ):
            request.finish()  # the whole body, already made (or a file: no SQL left to run)
            return body  # a file as is: the server sends it with sendfile() only then
        request.watch.suspend()
        return _Body(body, request)


class _Request:
    """One request's watch, and its name once the application has routed it."""

    __slots__ = ("environ", "method", "named", "watch")

    def __init__(self, environ: Environ, options: MiddlewareOptions) -> None:
        self.environ = environ
        self.method = request_method(environ.get("REQUEST_METHOD", "GET"))
        self.named = False
        self.watch = RequestWatch(self._name, options)
        self.watch.__enter__()

    def _name(self) -> str:
        return f"{self.method} {_route_name(self.environ)}"

    def name(self) -> None:
        """At ``start_response``: Flask's request (and its rule) is gone once the
        application has returned."""
        self.named = True
        self.watch.rename()

    def finish(self) -> None:
        try:
            if not self.named:
                self.name()
            self.watch.finish()
        except Exception as exc:
            report_internal_error("WSGI middleware: closing the request's watch", exc)


class _Body:
    """The application's body, iterated inside the request's watch."""

    def __init__(self, body: Iterable[bytes], request: _Request) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        watch = self._request.watch
        watch.resume()
        try:
            if self._iterator is None:
                self._iterator = iter(self._body)
            return next(self._iterator)
        except BaseException:  # StopIteration included: the body is complete
            self._request.finish()
            raise
        finally:
            watch.suspend()

    def close(self) -> None:
        request = self._request
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                request.watch.resume()
                close()
        finally:
            request.finish()


def _is_file(body: Iterable[bytes], environ: Environ) -> bool:
    """The server's ``wsgi.file_wrapper`` (PEP 3333): the server checks the body's
    type to send the file by its platform's fast path, which a wrapper would defeat."""
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(body, wrapper)


def _path(environ: Environ) -> str:
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


def _route_name(environ: Environ) -> str:
    request = environ.get("werkzeug.request")
    if request is not None and hasattr(request, "url_rule"):  # Flask's request
        template = route_template(environ)
        return template if template is not None else UNMATCHED
    return _path(environ)


def route_template(environ: Environ) -> str | None:
    """Flask's matched rule as a template (``/users/{id}``), or ``None``."""
    rule = getattr(getattr(environ.get("werkzeug.request"), "url_rule", None), "rule", None)
    if not isinstance(rule, str):
        return None
    template = _templates.get(rule)
    if template is None:
        template = _CONVERTER.sub(r"{\1}", rule)
        if len(_templates) >= _MAX_CACHED_RULES:
            _templates.clear()
        _templates[rule] = template
    return str(environ.get("SCRIPT_NAME", "")) + template
