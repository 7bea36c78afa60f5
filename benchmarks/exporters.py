"""What each exporter costs per statement, as ratios to bare SQLAlchemy in the same process.

    python benchmarks/exporters.py              # about three minutes
    python benchmarks/exporters.py --quick      # smoke run
    python benchmarks/exporters.py --cpu-time   # on a busy machine (see below)

Two workloads, each variant on its own in-memory SQLite engine with identical data:

1. a mixed ORM workload (``session.get``, a join, a select and five lazy loads,
   an insert, an update, a delete, a commit: 11 statements and a transaction),
   where the ratios to bare SQLAlchemy and to the OpenTelemetry instrumentation
   are measured;
2. a cached Core ``select`` by primary key (about 14 us a statement bare), where
   an exporter's sub-microsecond cost per statement stands out of the noise
   (the targets for ``logging`` and ``otel no SDK`` are judged here).

The variants:

- ``bare``: SQLAlchemy alone;
- ``sqlwatch``: ``instrument(exporters=())``, the floor every exporter adds to;
- ``logging``: ``LoggingExporter`` with the ``sqlwatch`` logger above DEBUG
  (target: at most 0.5 us per statement over ``sqlwatch``);
- ``otel no SDK``: ``OTelExporter()`` with no provider configured, the API's
  no-op (target: at most 2 us per statement over ``sqlwatch``);
- ``otel SDK``: ``OTelExporter`` with an SDK ``TracerProvider`` and a
  ``BatchSpanProcessor`` to an exporter that drops spans;
- ``otel instrumentation``: ``opentelemetry-instrumentation-sqlalchemy`` on the
  same SDK set-up, when it is installed. Its package pins SQLAlchemy below 2.1,
  so it runs in a separate environment, e.g.::

      python -m venv /tmp/bench && /tmp/bench/bin/pip install -e ".[fast]" \\
          --pre opentelemetry-instrumentation-sqlalchemy "sqlalchemy~=2.0.0"
      /tmp/bench/bin/python benchmarks/exporters.py

  Target: sqlwatch's whole overhead with ``OTelExporter`` (capture, analysis,
  aggregation, detectors, spans) at most 0.8x the instrumentation's overhead.

Without the instrumentation the comparison is skipped, and said so.
See ``benchmarks/_harness.py`` for the method (interleaved rounds, min and median).
``--cpu-time`` times the main thread's CPU (``time.thread_time_ns``) instead of
wall time: time the machine gives other processes then no longer counts. The
``BatchSpanProcessor`` threads are left out of both OpenTelemetry variants alike.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from _harness import (
    SESSION_LISTENER,
    Results,
    Variant,
    fill_process_report,
    flush_pipeline,
    interleave,
    print_header,
    print_ratios,
)
from _workloads import core_engine, core_runner, orm_engine, orm_runner, orm_unit
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import (
    event,
)
from sqlalchemy.engine import Engine

import sqlwatch
from sqlwatch.exporters.log import LoggingExporter
from sqlwatch.exporters.otel import OTelExporter


def statements_per_unit() -> int:
    engine = orm_engine()
    count = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        count[0] += 1

    orm_unit(engine, 0)
    engine.dispose()
    return count[0]


class DropSpans(SpanExporter):
    """A span exporter that sends nowhere: the cost measured is the span's, not a network's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def sdk_tracer_provider() -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    return provider


def instrumentation_available() -> bool:
    try:
        import opentelemetry.instrumentation.sqlalchemy  # noqa: F401
    except ImportError:
        return False
    return True


NAMES = ("bare", "sqlwatch", "logging", "otel no SDK", "otel SDK", "otel instrumentation")


def set_up(
    make: Callable[[], Engine], run: Callable[[Engine], Callable[[int], None]], compare: bool
) -> tuple[list[Variant], list[TracerProvider]]:
    """One engine per variant, instrumented as the variant says."""
    listener = SESSION_LISTENER
    names = NAMES if compare else NAMES[:-1]
    # Every engine exists before any instrumentation: the OpenTelemetry instrumentor
    # wraps create_engine for the whole process once it runs.
    engines = {name: make() for name in names}
    sqlwatch.instrument(engines["sqlwatch"], exporters=())
    sqlwatch.instrument(engines["logging"], exporters=[LoggingExporter()])
    no_sdk = OTelExporter()
    assert not no_sdk.statement_enabled(), "a global OpenTelemetry provider is configured"
    sqlwatch.instrument(engines["otel no SDK"], exporters=[no_sdk])
    providers = [sdk_tracer_provider()]
    sqlwatch.instrument(
        engines["otel SDK"], exporters=[OTelExporter(tracer_provider=providers[0])]
    )
    fill_process_report(engines["sqlwatch"])  # a long-running process's steady state

    def bare(name: str) -> Variant:
        return Variant(name, run(engines[name]), before=listener.off, after=listener.on)

    def watched(name: str) -> Variant:
        return Variant(name, run(engines[name]), finish=flush_pipeline)

    variants = [bare("bare")] + [watched(name) for name in NAMES[1:5]]
    if compare:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        providers.append(sdk_tracer_provider())
        instrumentor = SQLAlchemyInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(
            engine=engines["otel instrumentation"], tracer_provider=providers[-1]
        )
        variants.append(bare("otel instrumentation"))
    return variants, providers


class _CpuClock:
    """Stands in for the ``time`` module in the harness: CPU time of this thread."""

    perf_counter_ns = staticmethod(time.thread_time_ns)
    strftime = staticmethod(time.strftime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, small batches")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--cpu-time", action="store_true", help="time the main thread's CPU, not wall time"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 20)
    units = 20 if args.quick else 100
    core_ops = 500 if args.quick else 3000
    if args.cpu_time:
        import _harness

        _harness.time = _CpuClock()  # type: ignore[assignment]

    clock = "main thread CPU time" if args.cpu_time else "wall time"
    print_header(f"exporters: per-statement cost ({clock})")
    logging.getLogger("sqlwatch").setLevel(logging.WARNING)  # above DEBUG
    compare = instrumentation_available()

    per_unit = statements_per_unit()
    print(f"-- mixed ORM workload, SQLite in memory, {per_unit} statements per unit")
    variants, providers = set_up(orm_engine, orm_runner, compare)
    orm = interleave(variants, ops=units, rounds=rounds)
    print_ratios(orm, "bare", [(v.name, None) for v in variants[1:]], unit="unit")
    report_exporters(orm, per_unit, targets=False)
    report_comparison(orm, per_unit, compare)
    sqlwatch.reset()

    print("-- cached Core select by primary key, SQLite in memory, 1 statement per op")
    variants, more = set_up(core_engine, core_runner, compare)
    providers += more
    core = interleave(variants, ops=core_ops, rounds=rounds)
    print_ratios(core, "bare", [(v.name, None) for v in variants[1:]], unit="stmt")
    report_exporters(core, 1, targets=True)
    report_comparison(core, 1, compare)
    sqlwatch.reset()
    for provider in providers:
        provider.shutdown()


def report_exporters(results: Results, per_unit: int, *, targets: bool) -> None:
    def added_us(name: str) -> float:
        return (results.min_ns(name) - results.min_ns("sqlwatch")) / per_unit / 1e3

    print("   each exporter, per statement, over sqlwatch with no exporter (min of rounds):")
    for name, target in (("logging", 0.5), ("otel no SDK", 2.0), ("otel SDK", None)):
        cost = added_us(name)
        verdict = ""
        if targets and target is not None:
            verdict = f"  target <= {target:.1f} us  " + ("ok" if cost <= target else "MISSED")
        print(f"     {name:<12} {cost:+7.2f} us{verdict}")


def report_comparison(results: Results, per_unit: int, compare: bool) -> None:
    if not compare:
        print(
            "   vs opentelemetry-instrumentation-sqlalchemy: skipped (not installed here;"
            " it needs SQLAlchemy 2.0: see this script's docstring)"
        )
        return

    def added_us(name: str, stat: Callable[[str], float]) -> float:
        return (stat(name) - stat("bare")) / per_unit / 1e3

    print("   sqlwatch + OTelExporter vs the instrumentation, same SDK set-up, per statement:")
    for label, stat in (("min", results.min_ns), ("median", results.median_ns)):
        ours = added_us("otel SDK", stat)
        theirs = added_us("otel instrumentation", stat)
        ratio = ours / theirs if theirs > 0 else float("inf")
        verdict = "ok" if ratio <= 0.8 else "MISSED"
        print(
            f"     {label:<6} sqlwatch {ours:+7.2f} us, instrumentation {theirs:+7.2f} us:"
            f" {ratio:.2f}x its overhead (target <= 0.80x: {verdict})"
        )


if __name__ == "__main__":
    main()
