"""``OTelExporter``: a CLIENT span per statement, and the database client metrics.

Names follow the stable OpenTelemetry database semantic conventions, taken from
``opentelemetry-semantic-conventions`` rather than typed by hand. The span is
built once, after the statement, with the statement's own start and end times
and every attribute known at creation (samplers see them): nothing stays open,
so two engines, sync and async, can never leave a span dangling.

Cost is the design constraint. With no SDK configured (the API's no-op
providers), ``statement_enabled()`` is two module-attribute reads and returns
``False``; the providers are looked at again only when the global ones change.
With an SDK, the attributes of an engine are computed once and those of a
statement shape (summary, sanitized text, fingerprint) once per shape.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.environment_variables import (
    OTEL_PYTHON_METER_PROVIDER,
    OTEL_PYTHON_TRACER_PROVIDER,
)
from opentelemetry.metrics import _internal as _metrics_internal
from opentelemetry.semconv._incubating.attributes.db_attributes import (
    DB_CLIENT_CONNECTION_POOL_NAME,
    DB_CLIENT_CONNECTION_STATE,
    DB_RESPONSE_RETURNED_ROWS,
)
from opentelemetry.semconv._incubating.metrics.db_metrics import (
    DB_CLIENT_CONNECTION_COUNT,
    DB_CLIENT_CONNECTION_TIMEOUTS,
    DB_CLIENT_CONNECTION_USE_TIME,
    DB_CLIENT_CONNECTION_WAIT_TIME,
)
from opentelemetry.semconv.attributes.code_attributes import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
)
from opentelemetry.semconv.attributes.db_attributes import (
    DB_NAMESPACE,
    DB_OPERATION_BATCH_SIZE,
    DB_QUERY_SUMMARY,
    DB_QUERY_TEXT,
    DB_RESPONSE_STATUS_CODE,
    DB_SYSTEM_NAME,
    DbSystemNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.metrics.db_metrics import DB_CLIENT_OPERATION_DURATION
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.pool import QueuePool

from sqlwatch._capture.call_sites import CallSite, split_call_site
from sqlwatch._capture.execution import perf_to_epoch_ns
from sqlwatch._context import current_chain, finding_from_elsewhere
from sqlwatch._guard import report_internal_error
from sqlwatch._histogram import GAMMA
from sqlwatch._version import __version__
from sqlwatch.exporters.base import Exporter, StatementEvent
from sqlwatch.records import EngineInfo, NPlusOne, StatementInfo

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

    from sqlwatch._capture.engine import EngineTracker
    from sqlwatch._capture.pool import PoolTracker

__all__ = [
    "N_PLUS_ONE_COUNT",
    "N_PLUS_ONE_EVENT",
    "SQLWATCH_FINGERPRINT",
    "OTelExporter",
    "db_system_name",
]

SQLWATCH_FINGERPRINT = "sqlwatch.fingerprint"
"""The statement family (``sqlwatch.analyze(sql).fingerprint``): joins a span to the
report's ``fingerprints`` and to N+1 findings."""
N_PLUS_ONE_EVENT = "sqlwatch.n_plus_one"
N_PLUS_ONE_COUNT = "sqlwatch.n_plus_one.count"
N_PLUS_ONE_PREFIX = "sqlwatch.n_plus_one."
SQLWATCH_SCOPE = "sqlwatch.scope"
SQLWATCH_CALL_SITE = "sqlwatch.call_site"

MAX_SUMMARY = 255
"""The conventions cap a parsed ``db.query.summary`` at 255 characters."""
_MAX_SHAPES = 4096
"""Statement shapes whose attributes are cached per engine; the cache restarts past it."""
_MAX_SITES = 64
"""Call sites cached per statement shape."""
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
"""The bucket boundaries the conventions advise for ``db.client.operation.duration``."""
_POOL_TIME_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)

_SYSTEM_NAMES = {
    "postgresql": DbSystemNameValues.POSTGRESQL.value,
    "mysql": DbSystemNameValues.MYSQL.value,
    "mariadb": DbSystemNameValues.MARIADB.value,
    "mssql": DbSystemNameValues.MICROSOFT_SQL_SERVER.value,
    # well-known values the package has only in incubating (deprecated) enums:
    "sqlite": "sqlite",
    "oracle": "oracle.db",
    "cockroachdb": "cockroachdb",
    "db2": "ibm.db2",
    "ibm_db_sa": "ibm.db2",
    "trino": "trino",
    "hana": "sap.hana",
}


def db_system_name(dialect: str) -> str:
    """``db.system.name`` for a SQLAlchemy dialect name.

    A dialect the conventions have no well-known value for is named by its own
    lowercase name, as the conventions ask for custom values.
    """
    return _SYSTEM_NAMES.get(dialect, dialect.lower())


def _newest_schema_url() -> str:
    """The newest schema of the installed conventions package: the attribute names
    come from that same package, so telemetry and schema always agree."""

    def version(member: Schemas) -> tuple[int, ...]:
        return tuple(int(p) for p in member.value.rsplit("/", 1)[-1].split("."))

    return max(Schemas, key=version).value


SCHEMA_URL = _newest_schema_url()


# -- reading the providers ---------------------------------------------------


class _GlobalProviders:
    """The identity of the global providers, read as cheaply as the API allows.

    The API keeps them in module globals; reading those is two dictionary
    lookups, where ``get_tracer_provider()`` also consults ``os.environ``. An API
    without those globals falls back to the public getters (their proxies are
    singletons, so identity still tells a change).
    """

    def __init__(self) -> None:
        self.tracer: Callable[[], object] = trace_api.get_tracer_provider
        self.meter: Callable[[], object] = metrics_api.get_meter_provider
        if hasattr(trace_api, "_TRACER_PROVIDER"):
            self.tracer = self._tracer_global
        if hasattr(_metrics_internal, "_METER_PROVIDER"):
            self.meter = self._meter_global

    @staticmethod
    def _tracer_global() -> object:
        return trace_api._TRACER_PROVIDER

    @staticmethod
    def _meter_global() -> object:
        return _metrics_internal._METER_PROVIDER


_providers = _GlobalProviders()


def _global_tracer_provider() -> trace_api.TracerProvider | None:
    """The global provider, or ``None`` while only the API's proxy is in place."""
    provider: trace_api.TracerProvider | None = getattr(trace_api, "_TRACER_PROVIDER", None)
    if provider is None and OTEL_PYTHON_TRACER_PROVIDER in os.environ:
        provider = trace_api.get_tracer_provider()  # loads the provider the variable names
    if provider is None or isinstance(provider, trace_api.ProxyTracerProvider):
        return None
    return provider


def _global_meter_provider() -> metrics_api.MeterProvider | None:
    provider: metrics_api.MeterProvider | None = getattr(
        _metrics_internal, "_METER_PROVIDER", None
    )
    if provider is None and OTEL_PYTHON_METER_PROVIDER in os.environ:
        provider = metrics_api.get_meter_provider()
    if provider is None or _is_proxy_meter_provider(provider):
        return None
    return provider


def _is_proxy_meter_provider(provider: object) -> bool:
    """Whether ``provider`` is the API's stand-in for a global meter provider not
    set yet (a private class, so known by name)."""
    return type(provider).__name__ == "_ProxyMeterProvider"


def _tracer_of(provider: trace_api.TracerProvider | None) -> trace_api.Tracer | None:
    """A tracer that records, or ``None`` when spans would go nowhere."""
    if provider is None or isinstance(provider, trace_api.NoOpTracerProvider):
        return None
    tracer = provider.get_tracer("sqlwatch", __version__, schema_url=SCHEMA_URL)
    if isinstance(tracer, (trace_api.NoOpTracer, trace_api.ProxyTracer)):
        return None  # OTEL_SDK_DISABLED=true, or a provider that hands out no-ops
    return tracer


# -- metric instruments ------------------------------------------------------


class _Instruments:
    """sqlwatch's instruments on one meter provider, created once per provider.

    Created twice, an instrument is a warning from the SDK and an observable
    one would report twice; the shared ``"otel"`` exporter is rebuilt by
    ``sqlwatch.reset()``, so instruments are kept by provider, not by exporter.
    """

    def __init__(self, provider: metrics_api.MeterProvider, meter: Meter) -> None:
        self.provider_ref = weakref.ref(provider)
        self._pool_times: dict[int, tuple[weakref.ref[Any], dict[int, int], dict[int, int]]] = {}
        """Per pool: its wait and hold histograms as last recorded."""
        self.duration: Histogram = meter.create_histogram(
            DB_CLIENT_OPERATION_DURATION,
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.n_plus_one: Counter = meter.create_counter(
            N_PLUS_ONE_COUNT,
            unit="{finding}",
            description="N+1 query patterns found by sqlwatch.",
        )
        self.wait_time: Histogram = meter.create_histogram(
            DB_CLIENT_CONNECTION_WAIT_TIME,
            unit="s",
            description="The time it took to obtain an open connection from the pool.",
            explicit_bucket_boundaries_advisory=_POOL_TIME_BUCKETS,
        )
        self.use_time: Histogram = meter.create_histogram(
            DB_CLIENT_CONNECTION_USE_TIME,
            unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
            explicit_bucket_boundaries_advisory=_POOL_TIME_BUCKETS,
        )
        meter.create_observable_up_down_counter(
            DB_CLIENT_CONNECTION_COUNT,
            callbacks=[self._observe_connections],
            unit="{connection}",
            description="The number of connections that are currently in the given state.",
        )
        meter.create_observable_counter(
            DB_CLIENT_CONNECTION_TIMEOUTS,
            callbacks=[self._observe_timeouts],
            unit="{timeout}",
            description="The number of connection timeouts while obtaining a connection.",
        )

    def _pools(self) -> Iterator[tuple[EngineTracker, dict[str, Any]]]:
        """The engines whose ``instrument()`` exporters send metrics to this provider."""
        from sqlwatch._state import STATE

        provider = self.provider_ref()
        for tracker in list(STATE.trackers.values()):
            for exporter in tracker.exporters:
                if (
                    isinstance(exporter, OTelExporter)
                    and exporter.meter_provider_in_use is provider
                ):
                    yield tracker, {DB_CLIENT_CONNECTION_POOL_NAME: tracker.name}
                    break

    def _observe_connections(self, options: CallbackOptions) -> Iterable[Observation]:
        """``db.client.connection.count``; also records the pool's wait and use times.

        Those two are histograms, which cannot be observed: the durations the pool
        tracker gathered since the last collection are recorded here, where every
        collection passes before the SDK reads its histograms.
        """
        from opentelemetry.metrics import Observation

        observations: list[Observation] = []
        try:
            seen: set[int] = set()
            for tracker, attributes in self._pools():
                counts = _connection_counts(tracker)
                if counts is not None:
                    used, idle = counts
                    observations.append(
                        Observation(used, {**attributes, DB_CLIENT_CONNECTION_STATE: "used"})
                    )
                    if idle is not None:
                        observations.append(
                            Observation(idle, {**attributes, DB_CLIENT_CONNECTION_STATE: "idle"})
                        )
                pool = _pool_tracker(tracker)
                if pool is not None:
                    seen.add(id(pool.process))
                    self._record_pool_times(pool, attributes)
            for key in [k for k in self._pool_times if k not in seen]:
                del self._pool_times[key]  # an engine no longer instrumented
        except Exception as exc:
            report_internal_error("OTelExporter connection metrics", exc)
        return observations

    def _record_pool_times(self, pool: PoolTracker, attributes: dict[str, Any]) -> None:
        counters = pool.process
        settle = getattr(pool, "settle", None)
        if callable(settle):
            settle()  # checkouts returned since: the tracker counts them in batches
        with pool.lock:
            counters.fold()
            waits = dict(counters.wait_histogram.buckets)
            holds = dict(counters.hold_histogram.buckets)
        entry = self._pool_times.get(id(counters))
        if entry is None or entry[0]() is not counters:
            entry = self._pool_times[id(counters)] = (weakref.ref(counters), {}, {})
        _, last_waits, last_holds = entry
        _record_new(self.wait_time, waits, last_waits, attributes)
        _record_new(self.use_time, holds, last_holds, attributes)

    def _observe_timeouts(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        observations: list[Observation] = []
        try:
            for tracker, attributes in self._pools():
                pool = _pool_tracker(tracker)
                if pool is not None and pool.info.has_timeouts:
                    with pool.lock:
                        timeouts = pool.process.timeouts
                    observations.append(Observation(timeouts, attributes))
        except Exception as exc:
            report_internal_error("OTelExporter connection timeouts", exc)
        return observations


def _record_new(
    histogram: Histogram,
    buckets: dict[int, int],
    last: dict[int, int],
    attributes: dict[str, Any],
) -> None:
    """Record the durations a log histogram gained since ``last`` (then update it).

    A duration is known to its bucket, within 2%: each is recorded as its
    bucket's middle value.
    """
    record = histogram.record
    for index, count in buckets.items():
        new = count - last.get(index, 0)
        if new > 0:
            seconds = (GAMMA ** (index + 0.5) if index else 1.0) / 1e9
            for _ in range(new):
                record(seconds, attributes)
    last.clear()
    last.update(buckets)


_instruments_by_provider: weakref.WeakKeyDictionary[metrics_api.MeterProvider, _Instruments] = (
    weakref.WeakKeyDictionary()
)


def _instruments_of(provider: metrics_api.MeterProvider | None) -> _Instruments | None:
    if provider is None or isinstance(provider, metrics_api.NoOpMeterProvider):
        return None
    instruments = _instruments_by_provider.get(provider)
    if instruments is None:
        meter = provider.get_meter("sqlwatch", __version__, schema_url=SCHEMA_URL)
        if isinstance(meter, metrics_api.NoOpMeter):
            return None  # OTEL_SDK_DISABLED=true
        instruments = _instruments_by_provider[provider] = _Instruments(provider, meter)
    return instruments


def _pool_tracker(tracker: EngineTracker) -> PoolTracker | None:
    """The engine's pool tracker (``sqlwatch._capture.pool``), where one runs."""
    from sqlwatch._capture.pool import pool_tracker_of

    return pool_tracker_of(tracker)


def _connection_counts(tracker: EngineTracker) -> tuple[int, int | None] | None:
    """``(used, idle)`` connections of an engine's pool.

    Read from the pool itself where it can say (``QueuePool`` and its async
    variant: it knows of connections checked out before sqlwatch came), else
    from the pool tracker, which knows no idle count.
    """
    engine = tracker.engine_ref()
    if engine is None:
        return None
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return pool.checkedout(), pool.checkedin()
    tracked = _pool_tracker(tracker)
    if tracked is not None:
        return tracked.checked_out(), None
    return None


# -- per-engine and per-shape attributes -------------------------------------


class _EngineAttributes:
    """What the OTel exporters precompute for one engine (in ``tracker.extensions``).

    Nothing here depends on the exporter, so several ``OTelExporter`` share it."""

    __slots__ = ("base", "shapes", "span_min_ns")

    def __init__(self, tracker: EngineTracker) -> None:
        info: EngineInfo = tracker.info
        base: dict[str, Any] = {DB_SYSTEM_NAME: db_system_name(info.dialect)}
        if info.database:
            base[DB_NAMESPACE] = info.database
        if info.host:
            base[SERVER_ADDRESS] = info.host
            if info.port is not None:
                base[SERVER_PORT] = info.port
        self.base = base
        self.span_min_ns = tracker.options.span_min_duration_ms * 1e6
        self.shapes: dict[int, _Shape] = {}

    def shape(self, info: StatementInfo, batch: bool) -> _Shape:
        # keyed by id: StatementInfo is cached per SQL text by the analyzer, so the
        # same object comes back; the stored reference guards against a reused id
        key = id(info) if not batch else -id(info)
        shape = self.shapes.get(key)
        if shape is None or shape.info is not info:
            if len(self.shapes) >= _MAX_SHAPES:
                self.shapes.clear()
            shape = self.shapes[key] = _Shape(self.base, info, batch)
        return shape


def span_name(info: StatementInfo, batch: bool) -> str:
    """The ``db.query.summary``: ``SELECT users``; ``BATCH INSERT users`` for executemany."""
    summary = info.summary or info.operation or "OTHER"
    if batch:
        summary = f"BATCH {summary}"
    if len(summary) > MAX_SUMMARY:
        # never cut inside an operation or a table name
        summary = summary[: MAX_SUMMARY + 1].rsplit(" ", 1)[0]
    return summary


class _Shape:
    """Attributes shared by every run of one statement shape on one engine."""

    __slots__ = ("by_site", "info", "metric_attributes", "name", "span_attributes")

    def __init__(self, base: dict[str, Any], info: StatementInfo, batch: bool) -> None:
        self.info = info
        self.name = span_name(info, batch)
        self.metric_attributes = {**base, DB_QUERY_SUMMARY: self.name}
        self.span_attributes = {
            **self.metric_attributes,
            DB_QUERY_TEXT: info.normalized,
            SQLWATCH_FINGERPRINT: info.fingerprint,
        }
        self.by_site: dict[CallSite, dict[str, Any]] = {}
        """The span attributes with a call site's ``code.*`` added: a statement shape
        runs from a handful of places, and the SDK copies what it is given."""

    def with_site(self, site: CallSite) -> dict[str, Any]:
        attributes = self.by_site.get(site)
        if attributes is None:
            if len(self.by_site) >= _MAX_SITES:
                self.by_site.clear()
            attributes = self.by_site[site] = {
                **self.span_attributes,
                CODE_FILE_PATH: site[0],
                CODE_LINE_NUMBER: site[1],
                CODE_FUNCTION_NAME: site[2],
            }
        return attributes


_error_attributes: dict[type[BaseException], dict[str, str]] = {}


def error_attributes(error: type[BaseException]) -> dict[str, str]:
    """``error.type`` (the driver's exception class) and, where the driver's class
    carries one, ``db.response.status_code`` (PostgreSQL's SQLSTATE)."""
    attributes = _error_attributes.get(error)
    if attributes is None:
        module = error.__module__
        name = error.__qualname__ if module == "builtins" else f"{module}.{error.__qualname__}"
        attributes = {ERROR_TYPE: name}
        sqlstate = getattr(error, "sqlstate", None)  # psycopg and asyncpg error classes
        if isinstance(sqlstate, str) and sqlstate:
            attributes[DB_RESPONSE_STATUS_CODE] = sqlstate
        if len(_error_attributes) < 1024:
            _error_attributes[error] = attributes
    return attributes


# -- the exporter ------------------------------------------------------------

_UNSET: Any = object()
_CLIENT = SpanKind.CLIENT
_ERROR_STATUS = Status(StatusCode.ERROR)
_INF = float("inf")


class OTelExporter(Exporter):
    """Spans and metrics for every statement, by the OpenTelemetry conventions.

    ``tracer_provider`` / ``meter_provider`` default to the global ones, followed
    as they change (setting the global provider after ``instrument()`` works).
    With neither configured, the exporter does nothing and costs next to nothing.
    """

    def __init__(
        self,
        tracer_provider: trace_api.TracerProvider | None = None,
        meter_provider: metrics_api.MeterProvider | None = None,
    ) -> None:
        # What ``trace.get_tracer_provider()`` returns before the SDK is set up is
        # the API's proxy: it stands for the global provider, so follow that one
        # (a proxy's tracer would be taken for a no-op, and spans never emitted).
        if isinstance(tracer_provider, trace_api.ProxyTracerProvider):
            tracer_provider = None
        if _is_proxy_meter_provider(meter_provider):
            meter_provider = None
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._follows_globals = tracer_provider is None or meter_provider is None
        self._seen_tracer_provider: Any = _UNSET
        self._seen_meter_provider: Any = _UNSET
        self._tracer: trace_api.Tracer | None = None
        self._instruments: _Instruments | None = None
        self.meter_provider_in_use: metrics_api.MeterProvider | None = None
        """The provider the metrics go to (``None``: none), for the pool callbacks."""
        self._enabled = False
        self._resolve()

    # -- providers ------------------------------------------------------------

    @property
    def timely_findings(self) -> bool:  # type: ignore[override]
        """Only while a recording span is current (a request's): the N+1 event goes
        on it, so the loop's statements are processed while it is. Without one
        (no SDK, or statements outside any traced request) there is nothing to
        put an event on, and no reason to process loader statements one by one."""
        return (
            self.statement_enabled()
            and self._tracer is not None
            and trace_api.get_current_span().is_recording()
        )

    def statement_enabled(self) -> bool:
        if self._follows_globals and (
            _providers.tracer() is not self._seen_tracer_provider
            or _providers.meter() is not self._seen_meter_provider
        ):
            self._resolve()
        return self._enabled

    def _resolve(self) -> None:
        self._seen_tracer_provider = _providers.tracer()
        self._seen_meter_provider = _providers.meter()
        tracer_provider = self._tracer_provider
        if tracer_provider is None:
            tracer_provider = _global_tracer_provider()
        meter_provider = self._meter_provider
        if meter_provider is None:
            meter_provider = _global_meter_provider()
        self._tracer = _tracer_of(tracer_provider)
        self._instruments = _instruments_of(meter_provider)
        self.meter_provider_in_use = meter_provider if self._instruments is not None else None
        self._enabled = self._tracer is not None or self._instruments is not None

    # -- statements -----------------------------------------------------------

    def on_statement(self, event: StatementEvent) -> None:
        execution = event._execution
        tracker = execution.tracker
        engine = tracker.extensions.get("otel")
        if engine is None:
            engine = tracker.extensions["otel"] = _EngineAttributes(tracker)
        batch = execution.batch_size > 1
        shape = engine.shape(execution.info, batch)
        error = execution.error
        duration_ns = execution.duration_ns

        instruments = self._instruments
        if instruments is not None:
            attributes = shape.metric_attributes
            if error is not None:
                attributes = {**attributes, **error_attributes(error)}
            instruments.duration.record(duration_ns / 1e9, attributes)

        tracer = self._tracer
        if tracer is None:
            return
        if (engine.span_min_ns or self not in tracker.exporters) and duration_ns < (
            self._span_min_ns(tracker, engine)
        ):
            return
        site = execution.call_site
        attributes = shape.span_attributes if site is None else shape.with_site(site)
        rows = execution.rowcount
        if (
            batch
            or error is not None
            or (rows is not None and execution.info.operation == "SELECT")
        ):
            attributes = attributes.copy()
            if batch:
                attributes[DB_OPERATION_BATCH_SIZE] = execution.batch_size
            elif rows is not None and execution.info.operation == "SELECT":
                attributes[DB_RESPONSE_RETURNED_ROWS] = rows
            if error is not None:
                attributes.update(error_attributes(error))
        # the SDK copies the attributes it is given: the cached dicts are never changed
        start = perf_to_epoch_ns(execution.start_ns)
        span = tracer.start_span(shape.name, kind=_CLIENT, attributes=attributes, start_time=start)
        if error is not None:
            span.set_status(_ERROR_STATUS)
        span.end(end_time=start + duration_ns)

    def _span_min_ns(self, tracker: EngineTracker, engine: _EngineAttributes) -> float:
        """The lowest ``span_min_duration_ms`` among the configurations that chose this
        exporter: the engine's, and any open watch that lists it."""
        threshold = engine.span_min_ns if self in tracker.exporters else _INF
        if threshold:
            chain = current_chain.get()
            if self in chain.statement_exporters:
                for scope in chain.scopes:
                    if self in scope.exporters and scope.watches(tracker.engine_id):
                        threshold = min(threshold, scope.options.span_min_duration_ms * 1e6)
        return threshold

    # -- findings -------------------------------------------------------------

    def on_n_plus_one(self, finding: NPlusOne, scope: str) -> None:
        self.statement_enabled()  # follow a provider set since the last statement
        attributes: dict[str, Any] = {
            N_PLUS_ONE_PREFIX + "kind": finding.kind,
            SQLWATCH_SCOPE: scope,
        }
        if finding.relationship:
            attributes[N_PLUS_ONE_PREFIX + "relationship"] = finding.relationship
        instruments = self._instruments
        if instruments is not None:
            instruments.n_plus_one.add(1, attributes)
        if self._tracer is None or finding_from_elsewhere.get():
            return  # no span, or the current one belongs to another thread's work
        span = trace_api.get_current_span()
        if not span.is_recording():
            return
        attributes[N_PLUS_ONE_PREFIX + "count"] = finding.count
        attributes[N_PLUS_ONE_PREFIX + "total_ms"] = finding.total_ms
        attributes[N_PLUS_ONE_PREFIX + "suggestion"] = finding.suggestion
        attributes[SQLWATCH_FINGERPRINT] = finding.fingerprint
        attributes[DB_QUERY_TEXT] = finding.normalized
        if finding.call_site:
            attributes[SQLWATCH_CALL_SITE] = finding.call_site
            path, line, function = split_call_site(finding.call_site)
            # absolute, as on the statement spans (reports show it relative)
            attributes[CODE_FILE_PATH] = path if path.startswith("<") else os.path.abspath(path)
            if line is not None:
                attributes[CODE_LINE_NUMBER] = line
            if function:
                attributes[CODE_FUNCTION_NAME] = function
        span.add_event(N_PLUS_ONE_EVENT, attributes)

    def __repr__(self) -> str:
        return (
            f"OTelExporter(tracer_provider={self._tracer_provider!r}, "
            f"meter_provider={self._meter_provider!r})"
        )
