"""``exporters=("otel",)`` with the global OpenTelemetry providers, in a fresh interpreter.

The global providers can be set only once per process, so each scenario runs
in a subprocess that prints what it saw as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.helpers import run_in_fresh_interpreter


def run_script(body: str, tmp_path: Path) -> dict[str, Any]:
    prelude = f"""
        import json
        import sqlwatch
        from sqlwatch._guard import raise_internal_errors
        from sqlalchemy import create_engine, text

        raise_internal_errors(True)
        engine = create_engine("sqlite:///{tmp_path / "global.db"}")
        """
    done = run_in_fresh_interpreter(tmp_path, prelude, body)
    last = done.stdout.strip().splitlines()[-1]
    result: dict[str, Any] = json.loads(last)
    return result


def test_without_an_sdk_the_exporter_is_off(tmp_path: Path) -> None:
    result = run_script(
        """
        from sqlwatch.exporters import resolve_exporters
        sqlwatch.instrument(engine, exporters=("otel",))
        (exporter,) = resolve_exporters(["otel"])
        with sqlwatch.watch() as w, engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        print(json.dumps({"enabled": exporter.statement_enabled(), "queries": w.query_count}))
        """,
        tmp_path,
    )
    assert result == {"enabled": False, "queries": 1}


def test_a_global_provider_set_after_instrument_is_followed(tmp_path: Path) -> None:
    result = run_script(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        sqlwatch.instrument(engine, exporters=("otel",))
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))  # before any SDK: nothing
            memory = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            trace.set_tracer_provider(provider)
            connection.execute(text("SELECT 2"))  # spans only
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            connection.execute(text("SELECT 3"))  # spans and metrics
        spans = [s.name for s in memory.get_finished_spans()]
        points = [
            p.count
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "db.client.operation.duration"
            for p in m.data.data_points
        ]
        print(json.dumps({"spans": spans, "points": points}))
        """,
        tmp_path,
    )
    assert result == {"spans": ["SELECT", "SELECT"], "points": [1]}


def test_sdk_disabled_by_environment_emits_nothing(tmp_path: Path) -> None:
    result = run_script(
        """
        import os
        os.environ["OTEL_SDK_DISABLED"] = "true"
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from sqlwatch.exporters.otel import OTelExporter

        exporter = OTelExporter(tracer_provider=TracerProvider())
        print(json.dumps({"enabled": exporter.statement_enabled()}))
        """,
        tmp_path,
    )
    assert result == {"enabled": False}


def test_providers_taken_before_the_sdk_is_set_up_follow_it(tmp_path: Path) -> None:
    # ``trace.get_tracer_provider()`` before the SDK is configured is the API's
    # proxy, which stands for the global provider set later: spans must follow.
    result = run_script(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from sqlwatch.exporters import OTelExporter

        exporter = OTelExporter(
            tracer_provider=trace.get_tracer_provider(),
            meter_provider=metrics.get_meter_provider(),
        )
        sqlwatch.instrument(engine, exporters=[exporter])
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))  # before any SDK: nothing
            enabled_before = exporter.statement_enabled()
            memory = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            trace.set_tracer_provider(provider)
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            connection.execute(text("SELECT 2"))
        spans = [s.name for s in memory.get_finished_spans()]
        points = [
            p.count
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "db.client.operation.duration"
            for p in m.data.data_points
        ]
        print(json.dumps({"before": enabled_before, "spans": spans, "points": points}))
        """,
        tmp_path,
    )
    assert result == {"before": False, "spans": ["SELECT"], "points": [1]}
