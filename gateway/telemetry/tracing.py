"""The process's tracer provider, started from ``telemetry.*``: spans batched and exported over
OTLP/gRPC to a collector, flushed when the process stops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
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

SHUTDOWN_SECONDS = 3.0
"""How long a stopping process waits for its last spans to be exported."""


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
    statements are its batches' (spans of their own would only add cost), and except when
    the process instrumented asyncpg itself. The provider is the gateway's own: it does not
    become OpenTelemetry's global one, which an embedding service keeps.
    """
    global _tracing
    if not settings.enabled:
        return None
    if _tracing is not None:
        return _tracing.provider
    provider = TracerProvider(
        # Only the API meets callers: a relay follows the choice its rows record.
        sampler=sampler(
            settings.sampling_ratio, trust_callers=settings.trust_callers or role != "api"
        ),
        resource=Resource.create(
            {
                "service.name": settings.service_name,
                "service.version": version(),
                "fanout.role": role,
            }
        ),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(settings)))
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    statements = role != "relay" and not instrumentor.is_instrumented_by_opentelemetry
    if statements:
        instrumentor.instrument(tracer_provider=provider)
    _tracing = _Tracing(provider, provider.get_tracer(TRACER_NAME, version()), statements)
    log.info("tracing: %s of new traces exported", f"{settings.sampling_ratio:.0%}")
    return provider


def stop_tracing(within_seconds: float = SHUTDOWN_SECONDS) -> None:
    """Export the spans still buffered and stop (nothing when tracing is off), waiting at most
    ``within_seconds`` for the collector: an unreachable one must not hold a stopping process
    past its grace period (what is not exported by then is dropped)."""
    global _tracing
    tracing, _tracing = _tracing, None
    if tracing is None:
        return
    if tracing.statements:
        AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    flushing = threading.Thread(
        target=tracing.provider.shutdown, name="fanout-tracing-shutdown", daemon=True
    )
    flushing.start()
    flushing.join(within_seconds)
    if flushing.is_alive():
        log.warning("tracing: spans not exported within %g s were dropped", within_seconds)


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
    with tracer().start_as_current_span(name) as span:
        if span.is_recording() or _tracing is None:
            yield
            return
        # Under this process's sampler a span follows its parent's choice: no statement of a
        # write left out of the trace is recorded, so none is worth the instrumentation's work.
        with suppress_instrumentation():
            yield


def tracer() -> trace.Tracer:
    """The gateway's tracer: this process's while it traces, else OpenTelemetry's global one
    (a no-op unless the embedding service set one)."""
    if _tracing is not None:
        return _tracing.tracer
    return trace.get_tracer(TRACER_NAME, version())


def _exporter(settings: TelemetrySettings) -> OTLPSpanExporter:
    endpoint = settings.endpoint
    headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
    return OTLPSpanExporter(
        endpoint=endpoint,
        insecure=endpoint.lower().startswith("http://") if endpoint is not None else None,
        headers=headers or None,
        timeout=settings.export_timeout_seconds,
    )
