"""The process's tracer provider, started from ``telemetry.*``: spans batched and exported over
OTLP/gRPC to a collector, flushed when the process stops."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from gateway.configuration.settings import TelemetrySettings
from gateway.telemetry.sampling import sampler
from gateway.version import version

log = logging.getLogger("gateway.telemetry")

Role = Literal["api", "relay", "command"]
"""What the process is: an API worker, a relay, or a command such as ``fanout backfill``."""

TRACER_NAME = "fanout"


@dataclass
class _Tracing:
    provider: TracerProvider
    tracer: trace.Tracer
    statements: bool
    """Whether asyncpg's statements are traced (undone on stop)."""


_tracing: _Tracing | None = None


def start_tracing(
    settings: TelemetrySettings, role: Role, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Start exporting this process's spans, if ``settings.enabled``, to ``exporter`` (by
    default OTLP/gRPC as the settings say); the provider (None when tracing is off).

    Statements are traced through asyncpg's instrumentation except in a relay, whose own
    statements are its batches' (spans of their own would only add cost). The provider
    becomes OpenTelemetry's global one unless the process set one before.
    """
    global _tracing
    if not settings.enabled:
        return None
    if _tracing is not None:
        return _tracing.provider
    provider = TracerProvider(
        sampler=sampler(settings.sampling_ratio),
        resource=Resource.create(
            {
                "service.name": settings.service_name,
                "service.version": version(),
                "fanout.role": role,
            }
        ),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(settings)))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    statements = role != "relay"
    if statements:
        AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _tracing = _Tracing(provider, provider.get_tracer(TRACER_NAME, version()), statements)
    log.info("tracing: %s of new traces exported", f"{settings.sampling_ratio:.0%}")
    return provider


def stop_tracing() -> None:
    """Export the spans still buffered and stop (nothing when tracing is off)."""
    global _tracing
    tracing, _tracing = _tracing, None
    if tracing is None:
        return
    if tracing.statements:
        AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    tracing.provider.shutdown()


@contextmanager
def traced(settings: TelemetrySettings, role: Role) -> Iterator[None]:
    """Tracing on (if enabled) for the time of the block, flushed at its end."""
    start_tracing(settings, role)
    try:
        yield
    finally:
        stop_tracing()


def tracing_on() -> bool:
    """Whether this process exports spans (so whether a span made now can be recorded)."""
    return _tracing is not None


@contextmanager
def operation(name: str) -> Iterator[None]:
    """A span over one of the gateway's writes (its transaction's statements are its
    children). Embedded in a service that traces with OpenTelemetry of its own, the span joins
    that service's trace."""
    with tracer().start_as_current_span(name):
        yield


def tracer() -> trace.Tracer:
    """The gateway's tracer: this process's while it traces, else OpenTelemetry's global one
    (a no-op unless the embedding service set one)."""
    if _tracing is not None:
        return _tracing.tracer
    return trace.get_tracer(TRACER_NAME, version())


def _exporter(settings: TelemetrySettings) -> OTLPSpanExporter:
    endpoint = settings.endpoint.get_secret_value() if settings.endpoint is not None else None
    headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
    return OTLPSpanExporter(
        endpoint=endpoint,
        insecure=endpoint.startswith("http://") if endpoint is not None else None,
        headers=headers or None,
        timeout=settings.export_timeout_seconds,
    )
