"""The W3C trace context an outbox row carries in its headers (``traceparent``), so that its
deliveries join the trace that wrote it. A caller's ``tracestate`` is not stored: it is the
caller's text, up to kilobytes, and every row, history entry and Kafka record would carry it."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"

_propagator = TraceContextTextMapPropagator()
_TRACEPARENT_LENGTH = len("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
_SAMPLED_FLAGS = frozenset(f"{flags:02x}" for flags in range(256) if flags & 1)


def with_trace_context(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the current span's trace context added, when a span is current (so
    when tracing is on); else ``headers`` itself. A row written outside any span, or whose
    headers already name a trace, keeps its headers."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or TRACEPARENT in headers:
        return headers
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return {**headers, TRACEPARENT: carrier[TRACEPARENT]}


def is_sampled(traceparent: object) -> bool:
    """Whether a ``traceparent`` says its trace is recorded (its flags' lowest bit), read
    without parsing the rest: the relay asks it of every event it delivers."""
    if not isinstance(traceparent, str) or len(traceparent) != _TRACEPARENT_LENGTH:
        return False  # absent, or not text (a row written by hand may hold anything)
    return traceparent[-2:] in _SAMPLED_FLAGS


def trace_context_of(headers: Mapping[str, str]) -> Context | None:
    """The context of the trace ``headers`` name, or None when they name none (or a malformed
    one)."""
    if not isinstance(headers.get(TRACEPARENT), str):
        return None
    context = _propagator.extract({TRACEPARENT: headers[TRACEPARENT]})
    span_context = trace.get_current_span(context).get_span_context()
    return context if span_context.is_valid else None


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The id of the trace ``headers`` name (32 hex digits), or None when they name none."""
    context = trace_context_of(headers)
    if context is None:
        return None
    return f"{trace.get_current_span(context).get_span_context().trace_id:032x}"
