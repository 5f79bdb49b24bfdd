"""The OpenTelemetry Collector of ``scripts/services.sh`` (``otelcol``): a span that the
OpenTelemetry SDK exports over OTLP/gRPC reaches the real collector, and its file exporter writes
it, attributes and all, to the spans file."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from support.servers import server_url

MARKER = "fanout.test.marker"


@dataclass(frozen=True)
class Collector:
    endpoint: str
    """Its OTLP gRPC receiver, ``http://127.0.0.1:<port>``."""
    spans_file: Path
    """Where its file exporter writes what it receives, one JSON export request a line."""


@pytest.fixture(scope="module")
def otel_collector() -> Collector:
    """The running collector, started by ``scripts/services.sh up otelcol`` when none is set."""
    url = server_url("otelcol")
    spans_file = os.environ.get("FANOUT_TEST_OTEL_SPANS_FILE")
    if not spans_file:
        pytest.fail("FANOUT_TEST_OTEL_SPANS_FILE is not set: where does the collector write?")
    return Collector(os.environ.get("FANOUT_TEST_OTLP_ENDPOINT", url), Path(spans_file))


def spans_in(path: Path) -> list[dict[str, Any]]:
    """Every span of the file exporter's JSON lines so far (a line being written is skipped)."""
    spans: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return spans
    for line in lines:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            continue
        for resource_spans in request.get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    spans.append({**span, "resource": resource_spans.get("resource", {})})
    return spans


def attribute(owner: dict[str, Any], key: str) -> Any:
    """The value of the OTLP/JSON attribute ``key`` of a span or resource (None if absent)."""
    for item in owner.get("attributes", []):
        if item["key"] == key:
            return next(iter(item["value"].values()))
    return None


def wait_for_span(path: Path, marker: str, within: float) -> dict[str, Any]:
    """The span whose marker attribute is ``marker``, once the file holds it."""
    deadline = time.monotonic() + within
    while True:
        for span in spans_in(path):
            if attribute(span, MARKER) == marker:
                return span
        if time.monotonic() > deadline:
            raise AssertionError(f"no span with {MARKER}={marker} in {path} after {within} s")
        time.sleep(0.05)


def test_a_span_exported_over_otlp_grpc_reaches_the_spans_file(otel_collector: Collector) -> None:
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

    written = wait_for_span(otel_collector.spans_file, marker, within=15)
    assert ended.context is not None
    assert written["traceId"] == format(ended.context.trace_id, "032x")
    assert written["spanId"] == format(ended.context.span_id, "016x")
    assert written["name"] == "collector-check"
    assert attribute(written["resource"], "service.name") == "fanout-gateway-tests"
