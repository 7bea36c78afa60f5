"""``watch()``: count what one block of code does to the database.

A ``Watch`` is a context manager (``with`` / ``async with``) and a decorator
(sync and async functions). It sees the statements of its own thread or
asyncio task only; nested watches each see the statements of the inner one.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar, cast

from sqlwatch._context import ScopeChain, current_chain, pop_scope, push_scope
from sqlwatch._guard import report_internal_error
from sqlwatch._state import STATE
from sqlwatch.config import Options
from sqlwatch.exporters import resolve_exporters
from sqlwatch.records import NPlusOne, Statement
from sqlwatch.report import Report
from sqlwatch.scope import Scope

__all__ = ["Watch", "watch"]

F = TypeVar("F", bound=Callable[..., Any])

WATCH_DEFAULTS: dict[str, Any] = {"detect_unused_eager_loads": True, "exporters": ()}

_RUNNING_CALL = "sqlwatch.watch.call"
"""The key, in ``Scope.extensions``, of the watch of one call of a decorated
function: how the decorating watch finds the call running in this context."""


class Watch:
    """The statements one block of code ran, and what sqlwatch found in them."""

    def __init__(
        self,
        name: str | None = None,
        *,
        engines: Iterable[Any] | None = None,
        **options: Any,
    ) -> None:
        given: object = name  # users may pass anything: check at run time
        if given is not None and not isinstance(given, str):
            # it names the scope in reports, logs and JSON: fail here, not in an exporter
            hint = "; as a decorator, write @sqlwatch.watch()" if callable(given) else ""
            raise TypeError(f"watch(name=...) must be a string, got {given!r}{hint}")
        self.name = name
        self.options = _parse_options(options) if options else _default_options()
        self._engine_ids = _engine_ids(engines)
        self._scope: Scope | None = None
        self._token: Token[ScopeChain] | None = None

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> Watch:
        if self._token is not None:
            raise RuntimeError("this watch is already open; create a new watch() to nest")
        scope = Scope(
            self.name or "watch",
            self.options,
            engine_ids=self._engine_ids,
            track_resources=self._track_resources,
        )
        self._scope = scope
        if self._called_through is not None:
            scope.extensions[_RUNNING_CALL] = self
        self._token = push_scope(scope)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    async def __aenter__(self) -> Watch:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        scope, token = self._scope, self._token
        if scope is None or token is None:
            return
        self._token = None
        # The block's last statements wait in the batch: process them while the
        # scope is still this context's, so that their findings count as found
        # here (on the current span) rather than in another thread's work.
        STATE.pipeline.flush()
        with contextlib.suppress(ValueError):  # closed from another context (WSGI iteration)
            pop_scope(token)
        try:  # runs in ``__exit__``: must not replace the exception leaving the block
            scope.close()
            scope.extensions.pop(_RUNNING_CALL, None)  # no longer running (and no cycle left)
            if self.name is not None:
                run = scope.run_summary()
                for outer in current_chain.get().scopes:
                    if not outer.closed:  # a thread or task that outlived its watch adds nothing
                        outer.add_child(run)
                process = STATE.pipeline.process_scope
                if process is not None:
                    process.add_child(run)
        except Exception as exc:
            report_internal_error("watch close", exc)

    # -- decorator ----------------------------------------------------------

    def __call__(self, fn: F) -> F:
        """Watch every call of ``fn``; ``.report`` holds the running call's (in this
        thread or task), else the latest call's.

        A generator function (sync or async) is watched while its body runs: from
        the first item asked for to the last, each step in the context of whoever
        iterates. Its statements count; the caller's between two items do not.
        """
        name = self.name or getattr(fn, "__qualname__", None) or "watch"
        if inspect.isasyncgenfunction(fn):
            return cast(F, self._async_generator_wrapper(fn, name))
        if inspect.isgeneratorfunction(fn):
            return cast(F, self._generator_wrapper(fn, name))
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                inner = self._fresh(name)
                async with inner:
                    try:
                        return await fn(*args, **kwargs)
                    finally:
                        self._latest = inner

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            inner = self._fresh(name)
            with inner:
                try:
                    return fn(*args, **kwargs)
                finally:
                    self._latest = inner

        return cast(F, wrapper)

    def _generator_wrapper(
        self, fn: Callable[..., Generator[Any, Any, Any]], name: str
    ) -> Callable[..., Generator[Any, Any, Any]]:
        """A generator that runs each step of ``fn``'s generator inside the call's
        watch. The scope cannot simply stay pushed across a ``yield``: a suspended
        generator shares its caller's context, so the caller's statements would
        count, and popping the scope at the end would also pop any watch the
        caller opened in between."""

        @functools.wraps(fn)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            generator = fn(*args, **kwargs)
            inner = self._fresh(name)
            inner._open_suspended()
            self._latest = inner
            try:
                sent: Any = None
                thrown: BaseException | None = None
                while True:
                    inner._step_in()
                    try:
                        item = generator.send(sent) if thrown is None else generator.throw(thrown)
                    except StopIteration as stop:
                        return stop.value
                    finally:
                        inner._step_out()
                    sent, thrown = None, None
                    try:
                        sent = yield item
                    except GeneratorExit:  # closed, or collected, unfinished
                        inner._step_in()
                        try:
                            generator.close()
                        finally:
                            inner._step_out()
                        raise
                    except BaseException as exc:  # thrown in by the caller: the body's to handle
                        thrown = exc
            finally:
                inner._finish()
                self._latest = inner

        return generator_wrapper

    def _async_generator_wrapper(
        self, fn: Callable[..., AsyncGenerator[Any, Any]], name: str
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        """``_generator_wrapper`` for an async generator function."""

        @functools.wraps(fn)
        async def async_generator_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            generator = fn(*args, **kwargs)
            inner = self._fresh(name)
            inner._open_suspended()
            self._latest = inner
            try:
                sent: Any = None
                thrown: BaseException | None = None
                while True:
                    inner._step_in()
                    try:
                        if thrown is None:
                            item = await generator.asend(sent)
                        else:
                            item = await generator.athrow(thrown)
                    except StopAsyncIteration:
                        return
                    finally:
                        inner._step_out()
                    sent, thrown = None, None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        inner._step_in()
                        try:
                            await generator.aclose()
                        finally:
                            inner._step_out()
                        raise
                    except BaseException as exc:
                        thrown = exc
            finally:
                inner._finish()
                self._latest = inner

        return async_generator_wrapper

    def _open_suspended(self) -> None:
        """Open the watch, outside the current context until ``_step_in``. Every
        step is one unit of work with the first (``_unit``): the process-wide scope
        judges a loop across the items as it would the same loop in one call."""
        self.__enter__()
        self._unit = current_chain.get().unit
        self._step_out()

    def _step_in(self) -> None:
        scope = self._scope
        if scope is not None and self._token is None and not scope.closed:
            self._token = push_scope(scope, self._unit)
            self._unit = current_chain.get().unit

    def _step_out(self) -> None:
        token = self._token
        if token is not None:
            self._token = None
            with contextlib.suppress(ValueError):  # another context: nothing of ours to undo
                pop_scope(token)

    def _finish(self) -> None:
        """Close, stepped in or not."""
        self._step_in()
        self._close()

    def _fresh(self, name: str) -> Watch:
        inner = Watch.__new__(Watch)
        inner.name = name
        inner.options = self.options
        inner._engine_ids = self._engine_ids
        inner._scope = None
        inner._token = None
        inner._called_through = self
        return inner

    _latest: Watch | None = None
    _called_through: Watch | None = None
    """The decorating watch, on the watch of one call."""
    _unit = 0
    """The unit of work of a decorated generator's steps (``_open_suspended``)."""
    _track_resources = True
    """psutil snapshots at open and close; the middleware turns them off per request."""

    # -- results ------------------------------------------------------------

    def _current(self) -> Watch:
        """This watch, or as a decorator the call running here, else the latest."""
        if self._scope is not None:
            return self
        for scope in reversed(current_chain.get().scopes):
            running = scope.extensions.get(_RUNNING_CALL)
            if running is not None and running._called_through is self:
                return running  # type: ignore[no-any-return]
        return self._latest if self._latest is not None else self

    @property
    def report(self) -> Report:
        """A live snapshot while the watch is open; the final report after it."""
        scope = self._current()._scope
        if scope is None:
            return Report(name=self.name or "watch")
        return scope.final_report() if scope.closed else scope.snapshot()

    @property
    def queries(self) -> list[Statement]:
        scope = self._current()._scope
        if scope is None:
            return []
        if scope.closed:
            return list(scope.final_report().statements)
        return [scope.statement(e) for e in scope.executions()]

    @property
    def query_count(self) -> int:
        scope = self._current()._scope
        return scope.query_count if scope is not None else 0

    @property
    def n_plus_one(self) -> list[NPlusOne]:
        return list(self.report.n_plus_one)

    @property
    def scope(self) -> Scope | None:
        """The internal scope while open (integrations use it)."""
        return self._scope

    def __repr__(self) -> str:
        state = "open" if self._token is not None else "closed"
        return f"<sqlwatch.Watch {self.name or 'watch'!r} {state} queries={self.query_count}>"


def _parse_options(options: dict[str, Any]) -> Options:
    parsed = Options.from_kwargs(options, **WATCH_DEFAULTS)
    if not parsed.exporters:
        return parsed
    # resolved here, so a misspelt exporter name fails now, not at the first ``with``
    return parsed.replace(exporters=resolve_exporters(parsed.exporters))


@functools.cache
def _default_options() -> Options:
    """``watch()`` without options, validated once: a watch per request or per
    test should not pay for checking the same defaults every time."""
    return _parse_options({})


def _engine_ids(engines: Iterable[Any] | None) -> frozenset[int] | None:
    if engines is None:
        return None
    from sqlwatch.instrumentation import _sync_engine, instrument, tracker_for

    if not isinstance(engines, Iterable) or isinstance(engines, (str, bytes)):
        engines = [engines]
    ids = set()
    for engine in engines:
        if tracker_for(engine) is None:
            instrument(engine, exporters=())
        ids.add(id(_sync_engine(engine)))
    return frozenset(ids)


def watch(
    name: str | None = None, *, engines: Iterable[Any] | None = None, **options: Any
) -> Watch:
    """A scope around a block of code or a function: see ``Watch``."""
    return Watch(name, engines=engines, **options)
