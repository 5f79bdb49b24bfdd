"""Traces: which spans are recorded, the trace context an outbox row carries, and the relay's
batch, apply and delivery spans (exported in memory here; tests/acceptance/test_traces.py
follows an order through the real collector)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
)

from adapters.base import Delivery, EventEnvelope
from gateway.configuration.settings import TelemetrySettings
from gateway.telemetry import deliveries, tracing
from gateway.telemetry.propagation import (
    TRACEPARENT,
    is_sampled,
    trace_context_of,
    with_trace_context,
)
from gateway.telemetry.sampling import links_a_recorded_trace, sampler, starts_a_trace

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


def traceparent(sampled: bool, trace_id: int = TRACE_ID, span_id: int = SPAN_ID) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def event(headers: dict[str, str] | None = None) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        sequence=1,
        aggregate_type="order",
        aggregate_id=str(uuid.uuid4()),
        version=1,
        event_type="order.placed",
        payload={},
        headers=headers or {},
        occurred_at=datetime.now(UTC),
    )


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on (every new trace kept), its spans exported in memory."""
    exporter = InMemorySpanExporter()
    tracing.start_tracing(TelemetrySettings(enabled=True), "relay", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.stop_tracing()


def attributes(span: ReadableSpan) -> Mapping[str, object]:
    return span.attributes or {}


def during(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None and span.end_time is not None
    return span.start_time, span.end_time


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    provider = tracing.start_tracing(TelemetrySettings(enabled=True), "relay")
    assert provider is not None
    provider.force_flush()
    return list(exporter.get_finished_spans())


# Sampling


def test_a_client_call_without_a_parent_starts_no_trace() -> None:
    assert not starts_a_trace(SpanKind.CLIENT)
    assert starts_a_trace(SpanKind.SERVER)
    assert starts_a_trace(SpanKind.INTERNAL)
    assert starts_a_trace(None)


def test_new_traces_are_kept_at_the_ratio_and_a_caller_s_choice_is_followed() -> None:
    keep_all, keep_none = sampler(1.0), sampler(0.0)
    sampled_parent = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, True, TraceFlags(TraceFlags.SAMPLED)))
    )
    unsampled_parent = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, True, TraceFlags(TraceFlags.DEFAULT)))
    )

    def decision(rule: Sampler, parent: Context | None, kind: SpanKind) -> Decision:
        return rule.should_sample(parent, TRACE_ID, "span", kind).decision

    assert decision(keep_all, None, SpanKind.SERVER) is Decision.RECORD_AND_SAMPLE
    assert decision(keep_all, None, SpanKind.CLIENT) is Decision.DROP
    assert decision(keep_none, None, SpanKind.SERVER) is Decision.DROP
    assert decision(keep_none, sampled_parent, SpanKind.CLIENT) is Decision.RECORD_AND_SAMPLE
    assert decision(keep_all, unsampled_parent, SpanKind.SERVER) is Decision.DROP


# The trace context of an outbox row


@pytest.mark.parametrize(
    ("value", "sampled"),
    [
        (traceparent(True), True),
        (traceparent(False), False),
        (traceparent(True)[:-2] + "03", True),
        (traceparent(True)[:-2] + "zz", False),
        (traceparent(True) + "-", False),
        (None, False),
        ("", False),
        (123, False),
    ],
)
def test_a_traceparent_says_whether_its_trace_is_recorded(value: object, sampled: bool) -> None:
    assert is_sampled(value) is sampled


def test_headers_outside_a_span_are_left_as_they_are() -> None:
    headers = {"idempotency_key": "k"}

    assert with_trace_context(headers) is headers


def test_headers_written_in_a_span_carry_its_trace(exported: InMemorySpanExporter) -> None:
    headers = {"idempotency_key": "k"}
    with tracing.tracer().start_as_current_span("place order") as span:
        carried = with_trace_context(headers)
    context = span.get_span_context()

    assert carried.keys() == {"idempotency_key", TRACEPARENT}
    assert carried[TRACEPARENT][:52] == f"00-{context.trace_id:032x}-{context.span_id:016x}"
    assert is_sampled(carried[TRACEPARENT])
    assert headers == {"idempotency_key": "k"}


def test_headers_that_already_name_a_trace_keep_it(exported: InMemorySpanExporter) -> None:
    headers = {TRACEPARENT: traceparent(True)}
    with tracing.tracer().start_as_current_span("backfill"):
        assert with_trace_context(headers) is headers


def test_a_malformed_traceparent_names_no_trace() -> None:
    assert trace_context_of({TRACEPARENT: "00-nothex-b7ad6b7169203331-01"}) is None
    assert trace_context_of({TRACEPARENT: 5}) is None  # type: ignore[dict-item]
    assert trace_context_of({}) is None
    assert trace_context_of({TRACEPARENT: traceparent(True)}) is not None


# The relay's spans


def test_with_tracing_off_the_relay_makes_no_span() -> None:
    batch = deliveries.start_batch("redis", iter([event({TRACEPARENT: traceparent(True)})]))
    with deliveries.applying("redis", [event({TRACEPARENT: traceparent(True)})]) as results:
        results.append(Delivery.ok())

    assert batch is trace.INVALID_SPAN
    assert not tracing.tracing_on()


def test_each_recorded_event_gets_a_delivery_span_in_its_own_trace(
    exported: InMemorySpanExporter,
) -> None:
    recorded = event({TRACEPARENT: traceparent(True)})
    failed = event({TRACEPARENT: traceparent(True, span_id=SPAN_ID + 1)})
    unrecorded = event({TRACEPARENT: traceparent(False, trace_id=TRACE_ID + 1)})
    untraced = event()
    batch = deliveries.start_batch("redis", [recorded, failed, unrecorded, untraced])
    applied_events = [recorded, failed, unrecorded, untraced]
    with trace.use_span(batch), deliveries.applying("redis", applied_events) as results:
        results += [Delivery.ok(), Delivery.permanent("bad payload"), Delivery.ok(), Delivery.ok()]
    deliveries.end_batch(batch, delivered=3, dead=1, given_up=False)

    spans = {span.name: span for span in finished(exported) if not span.name.startswith("deliver")}
    delivered = [span for span in finished(exported) if span.name == "deliver redis"]
    applied, relayed = spans["apply redis"], spans["relay batch"]

    assert len(delivered) == 2
    by_parent = {span.parent.span_id: span for span in delivered if span.parent is not None}
    assert set(by_parent) == {SPAN_ID, SPAN_ID + 1}
    ok, bad = by_parent[SPAN_ID], by_parent[SPAN_ID + 1]
    assert ok.context.trace_id == TRACE_ID and bad.context.trace_id == TRACE_ID
    assert attributes(ok)["fanout.outcome"] == "delivered"
    assert attributes(ok)["fanout.aggregate_id"] == recorded.aggregate_id
    assert attributes(bad)["fanout.outcome"] == "permanent"
    assert bad.status.status_code is StatusCode.ERROR
    assert [link.context.span_id for link in ok.links] == [applied.context.span_id]
    assert during(applied)[0] <= during(ok)[0] <= during(ok)[1] <= during(applied)[1]

    assert applied.parent is not None and applied.parent.span_id == relayed.context.span_id
    assert attributes(applied)["fanout.failed"] == 1
    assert applied.status.status_code is StatusCode.ERROR
    assert {link.context.span_id for link in relayed.links} == {SPAN_ID, SPAN_ID + 1}
    assert attributes(relayed)["fanout.delivered"] == 3
    assert attributes(relayed)["fanout.dead_lettered"] == 1


def test_a_batch_links_to_at_most_so_many_origins(exported: InMemorySpanExporter) -> None:
    events = [
        event({TRACEPARENT: traceparent(True, span_id=SPAN_ID + n)})
        for n in range(deliveries.MAX_LINKS + 10)
    ]

    deliveries.end_batch(
        deliveries.start_batch("kafka", events), delivered=0, dead=0, given_up=True
    )

    [relayed] = finished(exported)
    assert len(relayed.links) == deliveries.MAX_LINKS
    assert relayed.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(("ratio", "statements_traced"), [(0.0, False), (1.0, True)])
def test_the_statements_of_a_write_left_out_of_the_trace_are_not_instrumented(
    ratio: float, statements_traced: bool
) -> None:
    exporter = InMemorySpanExporter()
    tracing.start_tracing(
        TelemetrySettings(enabled=True, sampling_ratio=ratio), "command", exporter=exporter
    )
    try:
        with tracing.operation("place order"):
            assert is_instrumentation_enabled() is statements_traced
        assert is_instrumentation_enabled()
    finally:
        tracing.stop_tracing()


def test_with_tracing_off_a_write_leaves_instrumentation_alone() -> None:
    with tracing.operation("place order"):
        assert is_instrumentation_enabled()


def test_a_caller_s_choice_is_not_followed_when_callers_are_not_trusted() -> None:
    remote = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, True, TraceFlags(TraceFlags.SAMPLED)))
    )
    untrusting = sampler(0.0, trust_callers=False)

    assert untrusting.should_sample(remote, TRACE_ID, "POST /orders").decision is Decision.DROP


def test_a_batch_holding_a_recorded_order_is_kept_whatever_the_ratio() -> None:
    recorded = Link(SpanContext(TRACE_ID, SPAN_ID, True, TraceFlags(TraceFlags.SAMPLED)))
    unrecorded = Link(SpanContext(TRACE_ID, SPAN_ID, True, TraceFlags(TraceFlags.DEFAULT)))

    assert links_a_recorded_trace([unrecorded, recorded])
    assert not links_a_recorded_trace([unrecorded]) and not links_a_recorded_trace(None)
    decision = sampler(0.0).should_sample(None, TRACE_ID, "relay batch", links=[recorded])
    assert decision.decision is Decision.RECORD_AND_SAMPLE


def test_a_malformed_traceparent_gets_no_delivery_span(exported: InMemorySpanExporter) -> None:
    malformed = event({TRACEPARENT: "00-" + "z" * 32 + "-" + "b" * 16 + "-01"})
    recorded = event({TRACEPARENT: traceparent(True)})
    with deliveries.applying("redis", [malformed, recorded]) as results:
        results += [Delivery.ok(), Delivery.ok()]

    delivered = [span for span in finished(exported) if span.name == "deliver redis"]
    assert [attributes(span)["fanout.event_id"] for span in delivered] == [str(recorded.event_id)]


def test_a_failure_of_tracing_never_stops_a_delivery(
    exported: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("the tracer is broken")

    monkeypatch.setattr(deliveries, "tracer", broken)
    recorded = event({TRACEPARENT: traceparent(True)})

    batch = deliveries.start_batch("redis", [recorded])
    with deliveries.applying("redis", [recorded]) as results:
        results.append(Delivery.ok())
    deliveries.end_batch(batch, delivered=1, dead=0, given_up=False)

    assert batch is trace.INVALID_SPAN
    assert results == [Delivery.ok()]


def test_the_gateway_s_provider_stays_its_own() -> None:
    provider = tracing.start_tracing(
        TelemetrySettings(enabled=True), "relay", exporter=InMemorySpanExporter()
    )
    try:
        assert provider is not None
        assert trace.get_tracer_provider() is not provider
    finally:
        tracing.stop_tracing()


def test_stopping_does_not_wait_on_a_collector_that_does_not_answer() -> None:
    released = threading.Event()

    class Stuck(InMemorySpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            released.wait(60)
            return SpanExportResult.SUCCESS

    tracing.start_tracing(TelemetrySettings(enabled=True), "relay", exporter=Stuck())
    with tracing.tracer().start_as_current_span("backfill"):
        pass
    try:
        tracing.stop_tracing(within_seconds=0.2)
        assert not released.is_set() and not tracing.tracing_on()
    finally:
        released.set()


def test_an_untrusted_caller_cannot_choose_a_trace_id_that_is_always_kept() -> None:
    remote = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, True, TraceFlags(TraceFlags.SAMPLED)))
    )
    zeros = TRACE_ID & ~((1 << 64) - 1)  # what the trace id ratio always keeps
    untrusting = sampler(0.5, trust_callers=False)

    kept = [
        untrusting.should_sample(remote, zeros, "POST /orders").decision
        is Decision.RECORD_AND_SAMPLE
        for _ in range(200)
    ]

    kept_by_id = sampler(0.5).should_sample(None, zeros, "POST /orders").decision
    assert kept_by_id is Decision.RECORD_AND_SAMPLE
    assert any(kept) and not all(kept)


def test_a_relay_records_deliveries_of_a_recorded_order_even_if_callers_are_not_trusted() -> None:
    exporter = InMemorySpanExporter()
    settings = TelemetrySettings(enabled=True, sampling_ratio=0.0, trust_callers=False)
    tracing.start_tracing(settings, "relay", exporter=exporter)
    try:
        with deliveries.applying("redis", [event({TRACEPARENT: traceparent(True)})]) as results:
            results.append(Delivery.ok())
        names = sorted(span.name for span in finished(exporter))
    finally:
        tracing.stop_tracing()

    assert names == ["apply redis", "deliver redis"]  # the apply of a replay: no batch above


def test_an_apply_stopped_before_the_sink_answered_is_an_error(
    exported: InMemorySpanExporter,
) -> None:
    recorded = event({TRACEPARENT: traceparent(True)})
    with pytest.raises(KeyboardInterrupt), deliveries.applying("redis", [recorded]):
        raise KeyboardInterrupt

    [applied] = finished(exported)
    assert applied.name == "apply redis" and applied.status.status_code is StatusCode.ERROR
