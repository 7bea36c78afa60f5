"""sqlwatch spans over the wire: the standard OTLP/HTTP exporter to a receiver on 127.0.0.1.

The receiver is a few lines of ``http.server`` in a thread that decodes each
``ExportTraceServiceRequest`` with ``opentelemetry-proto``, as a Collector
would: what arrives is what a tracing backend would store.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch.exporters.otel import OTelExporter
from tests.integration.helpers import is_sqlite
from tests.models import Base, User, seed


class Receiver:
    """An OTLP/HTTP traces endpoint: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or (
                    self.headers.get("Content-Type") != "application/x-protobuf"
                ):
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    receiver.requests.append(request)
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1/traces"

    def spans(self) -> list[tuple[str, ProtoSpan, dict[str, Any]]]:
        """``(scope name, span, attributes)`` of everything received."""
        found = []
        with self.lock:
            for request in self.requests:
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            found.append((scope_spans.scope.name, span, _attributes(span)))
        return found


def _attributes(span: ProtoSpan) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        attributes[item.key] = getattr(item.value, kind) if kind else None
    return attributes


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    receiver.thread.join(timeout=10)


def test_spans_arrive_over_otlp_http(engine: Engine, receiver: Receiver) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    provider = TracerProvider(
        resource=Resource.create({"service.name": "sqlwatch-test"}), shutdown_on_exit=False
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, timeout=10))
    )
    sqlwatch.instrument(engine, exporters=[OTelExporter(tracer_provider=provider)])
    tracer = provider.get_tracer("tests")
    request_span = tracer.start_as_current_span("GET /users")
    with request_span as request, sqlwatch.watch() as w, engine.begin() as connection:
        connection.execute(select(User).where(User.name == "user1")).all()
        connection.execute(
            insert(User.__table__),  # type: ignore[arg-type]
            [{"name": "x"}, {"name": "y"}],
        )
        with pytest.raises(Exception), connection.begin_nested():  # noqa: B017  (driver's error)
            connection.execute(text("SELECT * FROM not_there"))
    assert provider.force_flush(timeout_millis=20_000)
    sqlwatch.reset()
    provider.shutdown()

    received = receiver.spans()
    ours = [(span, attributes) for scope, span, attributes in received if scope == "sqlwatch"]
    assert len(ours) == w.query_count
    request_id = request.get_span_context().span_id.to_bytes(8, "big")
    trace_id = request.get_span_context().trace_id.to_bytes(16, "big")
    assert all(span.parent_span_id == request_id for span, _ in ours)
    assert all(span.trace_id == trace_id for span, _ in ours)
    assert all(span.kind == ProtoSpan.SPAN_KIND_CLIENT for span, _ in ours)

    by_name = {span.name: (span, attributes) for span, attributes in ours}
    select_span, select_attributes = by_name["SELECT users"]
    statement = next(q for q in w.queries if q.operation == "SELECT" and "users" in q.tables)
    assert select_attributes["db.system.name"] == ("sqlite" if is_sqlite(engine) else "postgresql")
    assert select_attributes["db.query.summary"] == "SELECT users"
    assert select_attributes["db.query.text"] == statement.normalized
    assert select_attributes["sqlwatch.fingerprint"] == statement.fingerprint
    assert select_attributes["code.function.name"] == "test_spans_arrive_over_otlp_http"
    assert select_attributes["code.file.path"] == __file__
    assert select_span.end_time_unix_nano - select_span.start_time_unix_nano == round(
        statement.duration_ms * 1e6
    )
    if not is_sqlite(engine):
        assert select_attributes["server.address"] == engine.url.host
        assert select_attributes["server.port"] == (engine.url.port or 5432)
        assert select_attributes["db.namespace"] == engine.url.database

    _, batch_attributes = by_name["BATCH INSERT users"]
    assert batch_attributes["db.operation.batch.size"] == 2

    error_span, error_attributes = by_name["SELECT not_there"]
    assert error_span.status.code == error_span.status.STATUS_CODE_ERROR
    assert error_attributes["error.type"]

    (service,) = {
        a.value.string_value
        for request_message in receiver.requests
        for rs in request_message.resource_spans
        for a in rs.resource.attributes
        if a.key == "service.name"
    }
    assert service == "sqlwatch-test"
