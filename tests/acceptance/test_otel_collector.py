"""The OpenTelemetry Collector of ``scripts/services.sh`` (``otelcol``): a span that the
OpenTelemetry SDK exports over OTLP/gRPC reaches the real collector, and its file exporter writes
it, attributes and all, to the spans file."""

from __future__ import annotations

import uuid

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.spans import Collector, attribute

MARKER = "fanout.test.marker"


def test_a_span_exported_over_otlp_grpc_reaches_the_spans_file() -> None:
    otel_collector = Collector.running()
    marker = uuid.uuid4().hex
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "fanout-gateway-tests"}))
    provider.add_span_processor(SimpleSpanProcessor(finished))
    try:
        with provider.get_tracer(__name__).start_as_current_span("collector-check") as span:
            span.set_attribute(MARKER, marker)
    finally:
        provider.shutdown()
    [ended] = finished.get_finished_spans()

    exporter = OTLPSpanExporter(endpoint=otel_collector.endpoint, insecure=True, timeout=10)
    try:
        assert exporter.export([ended]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()

    spans = otel_collector.wait_for(
        lambda spans: any(attribute(span, MARKER) == marker for span in spans),
        within=15,
        what=f"the span marked {marker}",
    )
    [written] = [span for span in spans if attribute(span, MARKER) == marker]
    assert ended.context is not None
    assert written["traceId"] == format(ended.context.trace_id, "032x")
    assert written["spanId"] == format(ended.context.span_id, "016x")
    assert written["name"] == "collector-check"
    assert attribute(written["resource"], "service.name") == "fanout-gateway-tests"
