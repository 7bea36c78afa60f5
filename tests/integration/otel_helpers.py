"""An OpenTelemetry SDK set up per test: spans to memory, metrics to an in-memory reader.

The global providers can be set once per process, so tests hand their
providers to ``OTelExporter`` explicitly; the global path is tested in a
subprocess (``test_otel_global.py``). Each module declares its fixture as
``yield from otel_sdk()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

import sqlwatch
from sqlwatch.exporters.otel import OTelExporter


class OpenSpans(SpanProcessor):
    """Counts spans started and ended: a span left open shows as a difference."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        with self._lock:
            self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended += 1


@dataclass
class OTel:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    memory: InMemorySpanExporter
    reader: InMemoryMetricReader
    open_spans: OpenSpans
    exporter: OTelExporter
    tracer: Tracer
    _metrics: dict[str, list[Any]] = field(default_factory=dict)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans (sqlwatch's only: the test's own spans come from ``tracer``)."""
        return [
            s
            for s in self.memory.get_finished_spans()
            if s.instrumentation_scope is not None
            and s.instrumentation_scope.name == "sqlwatch"
            and (name is None or s.name == name)
        ]

    def span(self, name: str) -> ReadableSpan:
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def collect(self) -> dict[str, Any]:
        """Metric name -> its ``Metric`` (one collection)."""
        data = self.reader.get_metrics_data()
        metrics: dict[str, Any] = {}
        if data is None:
            return metrics
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    metrics[metric.name] = metric
        return metrics


def otel_sdk() -> Iterator[OTel]:
    """The body of each test module's ``otel`` fixture (``yield from otel_sdk()``)."""
    memory = InMemorySpanExporter()
    open_spans = OpenSpans()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(open_spans)
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    exporter = OTelExporter(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield OTel(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        memory=memory,
        reader=reader,
        open_spans=open_spans,
        exporter=exporter,
        tracer=tracer_provider.get_tracer("tests"),
    )
    sqlwatch.reset()  # the engine fixtures' teardown runs SQL: no span after shutdown
    tracer_provider.shutdown()
    meter_provider.shutdown()
