"""Timing every statement of one engine, where SQLAlchemy calls the DBAPI cursor.

Any ``ConnectionEvents`` listener sends SQLAlchemy down its slow path (about
1.3x on a cached Core select). Every statement reaches the cursor through the
engine's own dialect: ``Dialect.do_execute``, ``do_executemany`` and
``do_execute_no_params``, public methods of the dialect interface, called on
the dialect instance that belongs to this one engine. sqlwatch puts its
listeners there, as attributes of that instance: each performs the cursor call
itself (or the dialect's own method), timed. ``DialectEvents`` offers the same
place as public events, but dispatching them costs 0.3 µs a statement more; it is
the fallback when the dialect's methods are shadowed already (another tool, or
another engine sharing the dialect). ``detach`` deletes the attributes, and the
class's methods show through again. Exceptions from the driver propagate
untouched (bare ``raise``), so SQLAlchemy wraps them exactly as it would without
sqlwatch.
"""

from __future__ import annotations

import logging
import re
import sys
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from time import perf_counter_ns
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.engine.interfaces import ExecuteStyle

from sqlwatch._analysis import analyzer_for
from sqlwatch._capture.call_sites import CallSite, CallSiteFinder
from sqlwatch._capture.execution import OrmLoad, RawExecution, new_raw
from sqlwatch._capture.orm import BOOKKEEPING_CODES, LOAD_OPTIONS, describe_load
from sqlwatch._capture.sqlcommenter import with_traceparent
from sqlwatch._context import EMPTY_CHAIN, ScopeChain, current_chain
from sqlwatch._guard import report_internal_error
from sqlwatch._pipeline import BATCH, COUNT_FOLD, MAX_COUNTED, Counted, Pipeline
from sqlwatch.config import Options
from sqlwatch.records import EngineInfo

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPICursor, ExecutionContext

__all__ = ["EngineTracker", "engine_name"]

ExportStatement = Callable[[RawExecution, tuple[Any, ...], tuple[Any, ...]], None]

_INSERTMANYVALUES = ExecuteStyle.INSERTMANYVALUES
_EXEC_INSERTMANY = getattr(getattr(Connection, "_exec_insertmany_context", None), "__code__", None)
_FIRST_CALLER_FRAME = 5
"""Where the call-site walk starts, seen from the listener (``sys._getframe`` depth
in ``find_call_site`` called by the listener). Above the listener, three frames
are always SQLAlchemy's: the listener's caller (``_exec_single_context``,
``_exec_insertmany_context``, ``_cursor_execute``), its caller
(``_execute_context``, ``_execute_scalar``), and the ``Connection`` method that
called that (``exec_driver_sql``, the shortest way in, or ``_execute_clauseelement``,
``_execute_ddl``...). Skipping them saves building three frame objects per
statement: on CPython 3.11+ a frame object is made only when asked for, and that
is most of what a walk costs. ``tests/integration/test_capture.py`` runs every
execution API against this on both supported SQLAlchemy versions."""


def _nothing(origin: RawExecution | None = None) -> None:
    pass


def _export_nothing(
    raw: RawExecution, exporters: tuple[Any, ...], with_params: tuple[Any, ...]
) -> None:
    pass


_SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token|key|auth|credential", re.IGNORECASE)
"""Query-string parameters that may hold a credential (``?password=``,
``sslpassword``, ``api_key``...): masked like the URL's password."""


def engine_name(engine: Engine) -> str:
    """The engine's URL with the password masked, in the query string too."""
    url = engine.url
    secrets = [key for key in url.query if _SECRET_QUERY_KEY.search(key)]
    if not secrets:
        return url.render_as_string(hide_password=True)
    masked = url.update_query_dict(dict.fromkeys(secrets, "***"))
    return masked.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _page_rows(context: ExecutionContext) -> int:
    """The rows of the "insertmanyvalues" INSERT being sent now.

    SQLAlchemy sends a large batch as pages of ``insertmanyvalues_page_size`` rows,
    each its own statement (and span). The page is a local variable of the
    ``Connection`` method that calls the dialect, and exists nowhere else; it is
    read from that frame, a few frames up (only for these INSERTs: a bulk insert
    page costs milliseconds, this a microsecond). Where a SQLAlchemy version
    hides it: the batch's total.
    """
    try:
        frame: FrameType | None = sys._getframe(2)
    except ValueError:
        frame = None
    for _ in range(4):
        if frame is None:
            break
        if frame.f_code is _EXEC_INSERTMANY:
            size = getattr(frame.f_locals.get("imv_batch"), "current_batch_size", None)
            if type(size) is int:
                return size
            break
        frame = frame.f_back
    return len(context.parameters)


def _driver_error(exc: BaseException) -> type[BaseException]:
    """The class of the driver's own exception. SQLAlchemy's adapters for async
    drivers (asyncpg) raise their own class with the driver's exception as the
    cause: ``ProgrammingError`` says less than ``UndefinedTableError``, and only
    the driver's class carries PostgreSQL's SQLSTATE."""
    cause = exc.__cause__
    if cause is not None and type(exc).__module__.startswith("sqlalchemy."):
        return type(cause)
    return type(exc)


def _outside_scopes(initialize: Callable[[Any], None]) -> Callable[[Any], None]:
    """``Dialect.initialize``, run outside any scope. SQLAlchemy calls it on an
    engine's first connection, which runs the dialect's own queries (PostgreSQL:
    ``version()``, ``current_schema()``, ``standard_conforming_strings``): they
    belong to no request or test, only to the process-wide report. Otherwise the
    first test or request to connect would count three statements more."""

    def sqlwatch_initialize(connection: Any) -> None:
        token = current_chain.set(EMPTY_CHAIN)
        try:
            initialize(connection)
        finally:
            current_chain.reset(token)

    return sqlwatch_initialize


def engine_info(engine: Engine, name: str) -> EngineInfo:
    url = engine.url
    return EngineInfo(
        name=name,
        dialect=engine.dialect.name,
        driver=engine.dialect.driver,
        host=url.host,
        port=url.port or _default_port(engine.dialect.name, url.host),
        database=url.database,
    )


def _default_port(dialect: str, host: str | None) -> int | None:
    if host is None:
        return None
    return {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}.get(dialect)


class EngineTracker:
    """Every listener sqlwatch put on one engine, and the way to take them off."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        options: Options,
        pipeline: Pipeline,
        export_statement: ExportStatement,
    ) -> None:
        self.engine_ref: weakref.ref[Engine] = weakref.ref(engine)
        self.engine_id = id(engine)
        self.name = name
        self.options = options
        self.info = engine_info(engine, name)
        self.analyzer = analyzer_for(engine.dialect.name)
        self.cached_info = self.analyzer.cached
        self.exporters: tuple[Any, ...] = ()
        self.call_sites = options.capture_call_sites
        self.capture_params = options.capture_params
        self.sqlcommenter = options.sqlcommenter
        self.slow_ns = options.slow_query_ms * 1e6
        self.extensions: dict[str, Any] = {}
        """Per-engine state of other components (the pool tracker), by name."""
        self._pipeline = pipeline
        self._pending = pipeline.pending
        self._flush = pipeline.flush
        self.counted: dict[str, Counted] | None = None
        """Statements run outside any scope, counted without a record, by SQL
        string (``sqlwatch._pipeline``); ``None`` while the process-wide scope
        still keeps records. Set by the pipeline."""
        self._seen_once: set[str] = set()
        self._to_fold = COUNT_FOLD
        """Counted statements until the next fold (not exact across threads: a
        lost decrement folds a little later)."""
        # One finder per place that walks, each learning its own exits (call_sites.py).
        self._sites = CallSiteFinder()
        self._record_sites = CallSiteFinder()
        self._load_sites = CallSiteFinder(BOOKKEEPING_CODES)
        self._record_load_sites = CallSiteFinder(BOOKKEEPING_CODES)
        self._export_statement = export_statement
        self._registrations: list[tuple[weakref.ref[Any], str, Callable[..., Any]]] = []
        self._dialect_hooks: list[tuple[Any, str, Callable[..., Any]]] = []
        """(dialect, method name, the listener set on the instance), for ``detach``."""
        self._cleanups: list[Callable[[], None]] = []
        dialect = engine.dialect
        self._do_execute = dialect.do_execute
        self._plain_execute = (
            getattr(dialect.do_execute, "__func__", None) is DefaultDialect.do_execute
        )
        """The dialect keeps SQLAlchemy's own ``do_execute`` (``cursor.execute``): the
        listener then makes that call itself, without a Python frame in between."""
        self._do_executemany = dialect.do_executemany
        self._do_execute_no_params = dialect.do_execute_no_params
        self._rowcount_after_fetch = dialect.driver in ("pysqlite", "pysqlcipher")

    # -- registration --------------------------------------------------------

    def listen(self, target: Any, identifier: str, fn: Callable[..., Any], **kw: Any) -> None:
        """Add a listener that ``detach`` will remove. The target is held weakly: an
        engine the application drops is freed, instrumented or not."""
        event.listen(target, identifier, fn, **kw)
        self._registrations.append((weakref.ref(target), identifier, fn))

    def attach(self) -> None:
        engine = self.engine_ref()
        assert engine is not None
        hooks: dict[str, Callable[..., Any]] = {
            "do_execute": self.on_do_execute,
            "do_executemany": self.on_do_executemany,
            "do_execute_no_params": self.on_do_execute_no_params,
        }
        dialect = engine.dialect
        own = getattr(dialect, "__dict__", None)
        if own is None or any(name in own for name in hooks):
            for name, fn in hooks.items():  # shadowed already (or slotted): the events
                self.listen(engine, name, fn)
        else:
            for name, fn in hooks.items():
                setattr(dialect, name, fn)
                self._dialect_hooks.append((dialect, name, fn))
            if "initialize" not in own:
                initialize = _outside_scopes(dialect.initialize)
                setattr(dialect, "initialize", initialize)  # noqa: B010 - an instance attribute, as the hooks
                self._dialect_hooks.append((dialect, "initialize", initialize))
        self._pipeline.attach(self)

    def detach(self) -> None:
        self._pipeline.detach(self)
        while self._dialect_hooks:
            dialect, name, fn = self._dialect_hooks.pop()
            if vars(dialect).get(name) is fn:
                delattr(dialect, name)
            else:  # wrapped again over ours by someone else: keep nothing from here on
                self._keep_nothing(name)
        while self._registrations:
            target_ref, identifier, fn = self._registrations.pop()
            target = target_ref()
            if target is None:
                continue  # gone, and its listeners with it
            try:
                if event.contains(target, identifier, fn):
                    event.remove(target, identifier, fn)
            except Exception as exc:
                report_internal_error("uninstrument", exc)
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception as exc:
                report_internal_error("uninstrument", exc)

    def _keep_nothing(self, name: str) -> None:
        """Another wrapper holds this tracker's listener and cannot be unwrapped:
        the listener still makes the cursor call, and its records go nowhere."""
        logging.getLogger("sqlwatch").warning(
            "sqlwatch left its %s listener on the dialect of %s: another wrapper was "
            "put over it after instrument(); it now only passes statements through",
            name,
            self.name,
        )
        self.counted = None
        self.exporters = ()
        self._pending = deque(maxlen=0)
        self._flush = _nothing
        self._export_statement = _export_nothing

    def on_detach(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` at ``detach``: for what is not an event listener (the
        pool tracker's wrappers on the pool instance)."""
        self._cleanups.append(cleanup)

    # -- the hot path -------------------------------------------------------
    # Three near-identical listeners, one per DBAPI call shape: merging them
    # would cost an extra call and branch on every statement.

    def on_do_execute(
        self,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None = None,
    ) -> bool:
        chain = current_chain.get()
        sent = statement
        if self.sqlcommenter or (chain.sqlcommenter and self._commenting_scope(chain)):
            sent = self._comment(statement)
        start = perf_counter_ns()
        try:
            if self._plain_execute:
                cursor.execute(sent, parameters)
            else:
                self._do_execute(cursor, sent, parameters, context)
        except BaseException as exc:
            self._record(chain, cursor, statement, parameters, context, start, 0, exc)
            raise
        duration = perf_counter_ns() - start
        if context is None:
            return True  # not from an engine (SQLAlchemy always passes the context)
        # ``_record`` inlined for the most common call: one less Python call per statement.
        try:
            for_exporters_only = False
            load_options = context.execution_options.get(LOAD_OPTIONS)
            orm = None if load_options is None else describe_load(load_options, context)
            if orm is None:
                site = (
                    self._sites.find(_FIRST_CALLER_FRAME, statement)
                    if self.call_sites or chain.call_sites
                    else None
                )
                counted = self.counted
                if counted is not None and not chain.scopes and duration < self.slow_ns:
                    # Outside any scope, with the process-wide records full: count it.
                    entry = counted.get(statement)
                    if entry is None:
                        self._count_from_now(counted, statement)
                    else:
                        entry.durations.append(duration)
                        if site is not None:
                            entry.sites.append(site)
                        self._to_fold -= 1
                        if self._to_fold <= 0:
                            self._to_fold = COUNT_FOLD
                            self._pipeline.fold_tracker(self)
                        try:  # ``_wanted_by_exporters``, inlined on the hottest path
                            for exporter in self.exporters:
                                if exporter.statement_enabled():
                                    break
                            else:
                                return True
                        except Exception:
                            pass
                        for_exporters_only = True  # a record for the exporters only
            else:
                orm, site = self._orm_site(
                    orm, chain, self._load_sites, _FIRST_CALLER_FRAME + 1, statement
                )
            raw = new_raw(
                RawExecution,
                (
                    self,
                    statement,
                    parameters,
                    start,
                    duration,
                    cursor.rowcount or self._zero_rowcount(cursor),
                    _page_rows(context) if context.execute_style is _INSERTMANYVALUES else 0,
                    site,
                    orm,
                    None,
                    chain,
                ),
            )
            if for_exporters_only:
                self._export(raw, chain)  # counted already, not kept
                return True
            pending = self._pending
            pending.append(raw)
            if (
                len(pending) >= BATCH
                or duration >= self.slow_ns
                or duration >= chain.slow_ns
                or (orm is not None and self._urgent(orm, chain))
            ):
                self._flush(raw)
            if chain.statement_exporters or (self.exporters and self._wanted_by_exporters()):
                self._export(raw, chain)
        except Exception as error:
            report_internal_error("statement capture", error)
        return True

    def on_do_executemany(
        self,
        cursor: DBAPICursor,
        statement: str,
        parameters: Sequence[Any],
        context: ExecutionContext | None = None,
    ) -> bool:
        chain = current_chain.get()
        sent = statement
        if self.sqlcommenter or (chain.sqlcommenter and self._commenting_scope(chain)):
            sent = self._comment(statement)
        start = perf_counter_ns()
        batch = len(parameters)
        try:
            self._do_executemany(cursor, sent, parameters, context)
        except BaseException as exc:
            self._record(chain, cursor, statement, parameters, context, start, batch, exc)
            raise
        self._record(chain, cursor, statement, parameters, context, start, batch, None)
        return True

    def on_do_execute_no_params(
        self, cursor: DBAPICursor, statement: str, context: ExecutionContext | None = None
    ) -> bool:
        chain = current_chain.get()
        sent = statement
        if self.sqlcommenter or (chain.sqlcommenter and self._commenting_scope(chain)):
            sent = self._comment(statement)
        start = perf_counter_ns()
        try:
            self._do_execute_no_params(cursor, sent, context)
        except BaseException as exc:
            self._record(chain, cursor, statement, None, context, start, 0, exc)
            raise
        self._record(chain, cursor, statement, None, context, start, 0, None)
        return True

    def _wanted_by_exporters(self) -> bool:
        """Whether one of the engine's exporters wants statements now: most often
        a logger above DEBUG, which says no. An exporter whose check raises is
        given the statement, so that ``export_statement`` reports its error and
        the exporters after it still get the statement."""
        try:
            for exporter in self.exporters:
                if exporter.statement_enabled():
                    return True
        except Exception:
            return True
        return False

    def _zero_rowcount(self, cursor: DBAPICursor) -> int:
        """The rowcount when the cursor said 0 (checked only then: no cost otherwise).

        pysqlite reports 0 for a ``RETURNING`` statement until its rows are
        fetched: that is unknown (-1, reported as ``None``), not zero rows.
        """
        return -1 if self._rowcount_after_fetch and cursor.description is not None else 0

    def _commenting_scope(self, chain: ScopeChain) -> bool:
        """Whether an open scope that asked for ``sqlcommenter`` watches this engine
        (``watch(engines=[a], sqlcommenter=True)`` leaves engine b's SQL alone)."""
        return any(
            scope.options.sqlcommenter and scope.watches(self.engine_id) for scope in chain.scopes
        )

    def _comment(self, statement: str) -> str:
        try:
            return with_traceparent(statement)
        except Exception as exc:
            report_internal_error("sqlcommenter", exc)
            return statement

    def _record(
        self,
        chain: ScopeChain,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        start: int,
        batch: int,
        exc: BaseException | None,
    ) -> None:
        duration = perf_counter_ns() - start
        if context is None:
            return  # not from an engine (SQLAlchemy always passes the context)
        try:
            if not batch and context.execute_style is _INSERTMANYVALUES:
                batch = _page_rows(context)  # one multi-row INSERT of a batch
            load_options = context.execution_options.get(LOAD_OPTIONS)
            orm = None if load_options is None else describe_load(load_options, context)
            if orm is None:
                site = (
                    self._record_sites.find(_FIRST_CALLER_FRAME + 1, statement)
                    if self.call_sites or chain.call_sites
                    else None
                )
            else:
                orm, site = self._orm_site(
                    orm, chain, self._record_load_sites, _FIRST_CALLER_FRAME + 2, statement
                )
            raw = new_raw(
                RawExecution,
                (
                    self,
                    statement,
                    parameters,
                    start,
                    duration,
                    (cursor.rowcount or self._zero_rowcount(cursor)) if exc is None else None,
                    batch,
                    site,
                    orm,
                    None if exc is None else _driver_error(exc),
                    chain,
                ),
            )
            pending = self._pending
            pending.append(raw)
            if (
                exc is not None
                or (orm is not None and self._urgent(orm, chain))
                or duration >= self.slow_ns
                or duration >= chain.slow_ns
                or len(pending) >= BATCH
            ):
                self._flush(raw)
            if chain.statement_exporters or (self.exporters and self._wanted_by_exporters()):
                self._export(raw, chain)
        except Exception as error:
            report_internal_error("statement capture", error)

    def _orm_site(
        self, orm: OrmLoad, chain: ScopeChain, sites: CallSiteFinder, depth: int, sql: str
    ) -> tuple[OrmLoad, CallSite | None]:
        """The call site of an ORM loader statement, and its label completed.

        A lazy or column load is walked to the application's frame even with call
        sites off: the same walk tells a load the ORM made for its own bookkeeping
        (under ``Session.delete``; a flush is told by the session itself).
        """
        wanted = self.call_sites or chain.call_sites
        if orm.kind == "eager_load":
            return orm, sites.find_noting(depth, sql)[0] if wanted else None
        site, internal = sites.find_noting(depth, sql)
        if internal and not orm.internal:
            orm = orm._replace(internal=True)
        return orm, site if wanted else None

    def _count_from_now(self, counted: dict[str, Counted], statement: str) -> None:
        """Count ``statement`` without a record from its next run on, if it comes
        back: SQL with inlined literals is a new string each time and would only
        fill the table."""
        seen_once = self._seen_once
        if statement not in seen_once:
            if len(seen_once) >= MAX_COUNTED:
                seen_once.clear()
            seen_once.add(statement)
        elif len(counted) < MAX_COUNTED:
            counted[statement] = Counted()
            seen_once.discard(statement)

    def _urgent(self, orm: OrmLoad, chain: ScopeChain) -> bool:
        """Whether an ORM loader statement must be processed now, not in a batch.

        Eager loads: the unused-eager-load detector must see them before the
        application reads the rows. Lazy loads: when an exporter wants N+1
        findings while the loop still runs (its span still current), until every
        scope of the statement has reported the loop; later loads only count.
        """
        if orm.kind == "eager_load":
            return True
        if orm.internal:
            return False  # the unit of work's own loads are never an N+1
        for exporters in (self.exporters, chain.statement_exporters):
            for exporter in exporters:
                if getattr(exporter, "timely_findings", False):
                    return self._unreported(orm, chain)
        return False

    def _unreported(self, orm: OrmLoad, chain: ScopeChain) -> bool:
        """Whether a scope that sees this loader statement has yet to report its N+1."""
        key = (orm.kind, orm.attribute)
        process = self._pipeline.process_scope
        if process is not None and not process.reported_n_plus_one(key):
            return True
        for scope in chain.scopes:
            if scope.watches(self.engine_id) and not scope.reported_n_plus_one(key):
                return True
        return False

    def _export(self, raw: RawExecution, chain: ScopeChain) -> None:
        """Give the statement to the engine's exporters and to those of the open
        scopes that watch this engine, each exporter once. An exporter sees bound
        parameters only where a configuration that chose it has ``capture_params``:
        a watch that keeps them for its own report does not hand them to the
        engine's log."""
        exporters = self.exporters
        with_params = exporters if self.capture_params else ()
        for scope in chain.scopes:
            if scope.exporters and scope.watches(self.engine_id):
                exporters += tuple(e for e in scope.exporters if e not in exporters)
                if scope.options.capture_params:
                    with_params += scope.exporters
        if exporters:
            self._export_statement(raw, exporters, with_params)
