"""The relay's spans. A sink's batch is a span of the relay's own trace, linked to the traces
its events came from; each apply of it to the sink is a child of the batch; and every event
whose trace is recorded gets a delivery span in that trace, so that an order's trace shows each
store it reached (or the error it met)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from adapters.base import Delivery, EventEnvelope, Outcome
from gateway.configuration.secrets import redact_url
from gateway.telemetry.propagation import TRACEPARENT, is_sampled, trace_context_of
from gateway.telemetry.tracing import tracer, tracing_on

log = logging.getLogger("gateway.telemetry")

MAX_LINKS = 32
"""The most origins a batch or an apply span links to (a batch can hold thousands)."""


def recorded_origins(events: Iterable[EventEnvelope]) -> list[EventEnvelope]:
    """The events whose trace is recorded (their ``traceparent`` says so)."""
    return [event for event in events if is_sampled(event.headers.get(TRACEPARENT))]


def origin_links(events: Sequence[EventEnvelope]) -> list[Link]:
    """Links to the recorded traces ``events`` came from, at most :data:`MAX_LINKS`, each
    span once."""
    seen: dict[tuple[int, int], SpanContext] = {}
    for event in events:
        context = trace_context_of(event.headers)
        if context is not None:
            span_context = trace.get_current_span(context).get_span_context()
            seen.setdefault((span_context.trace_id, span_context.span_id), span_context)
            if len(seen) == MAX_LINKS:
                break
    return [Link(span_context) for span_context in seen.values()]


def start_batch(sink: str, events: Iterable[EventEnvelope]) -> Span:
    """The span of one batch of ``sink`` (not current; end it with :func:`end_batch`); a
    span that records nothing while tracing is off (``events`` is then not even read)."""
    if not tracing_on():
        return trace.INVALID_SPAN
    with _never_raising("a batch's span"):
        batch = list(events)
        return tracer().start_span(
            "relay batch",
            kind=SpanKind.CONSUMER,
            links=origin_links(recorded_origins(batch)),
            attributes={"fanout.sink": sink, "fanout.events": len(batch)},
        )
    return trace.INVALID_SPAN


def within(span: Span) -> AbstractContextManager[Span]:
    """``span`` current for the block (not ended by it): what starts inside is its child. An
    exception passing through is not recorded on it (its text may hold a secret)."""
    return trace.use_span(span, record_exception=False, set_status_on_exception=False)


def end_batch(span: Span, *, delivered: int, dead: int, given_up: bool) -> None:
    """End a batch's span with what became of its events."""
    with _never_raising("a batch's span"):
        if span.is_recording():
            span.set_attributes({"fanout.delivered": delivered, "fanout.dead_lettered": dead})
            if given_up:
                span.set_status(Status(StatusCode.ERROR, "given up: read again"))
        span.end()


@contextmanager
def applying(sink: str, events: Sequence[EventEnvelope]) -> Iterator[list[Delivery]]:
    """The span of one apply of ``events`` to ``sink`` (a child of the current span); fill
    the list it yields with the sink's results, and on leaving each recorded event gets a
    delivery span in its own trace, over the apply's time, with its outcome (one per attempt:
    a retried event has one per apply that tried it)."""
    results: list[Delivery] = []
    span: Span = trace.INVALID_SPAN
    origins: list[EventEnvelope] = []
    if tracing_on():
        with _never_raising("an apply's span"):
            origins = recorded_origins(events)
            span = tracer().start_span(
                f"apply {sink}",
                kind=SpanKind.CLIENT,
                links=origin_links(origins),
                attributes={"fanout.sink": sink, "fanout.events": len(events)},
            )
    started = time.time_ns()
    # Nothing but a cancellation gets past apply_safely; its status is set below, unmasked
    # exception texts are never recorded.
    with trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        try:
            yield results
        except BaseException:  # cancelled (a shutdown, a batch read again) or failed
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR, "stopped before the sink answered"))
            raise
        ended = time.time_ns()
        if span.is_recording():
            with _never_raising("an apply's span"):
                failed = sum(result.outcome is not Outcome.DELIVERED for result in results)
                span.set_attribute("fanout.failed", failed)
                if failed:
                    span.set_status(Status(StatusCode.ERROR, f"{failed} of {len(events)} failed"))
    if origins:
        with _never_raising("the delivery spans"):
            answered = len(results) == len(events)
            pairs = [
                (event, results[index] if answered else None)
                for index, event in enumerate(events)
                if is_sampled(event.headers.get(TRACEPARENT))
            ]
            _delivery_spans(sink, pairs, span.get_span_context(), (started, ended))


@contextmanager
def _never_raising(what: str) -> Iterator[None]:
    """Tracing never stops a delivery: a failure of its own is logged and the span left out."""
    try:
        yield
    except Exception as error:  # tracing's own failure, whatever it is: the relay goes on
        failure = (what, type(error).__name__)
        level = logging.DEBUG if failure in _failed else logging.WARNING
        _failed.add(failure)
        log.log(level, "tracing: %s left out: %r", what, error)


_failed: set[tuple[str, str]] = set()
"""The failures of tracing so far (what it failed to make, and the error's type): each is
logged as a warning once, then at debug."""


def _delivery_spans(
    sink: str,
    pairs: Sequence[tuple[EventEnvelope, Delivery | None]],
    apply_span: SpanContext,
    during: tuple[int, int],
) -> None:
    started, ended = during
    for event, outcome in pairs:
        origin = trace_context_of(event.headers)
        if origin is None:
            continue  # a malformed traceparent names no trace to join
        span = tracer().start_span(
            f"deliver {sink}",
            context=origin,
            kind=SpanKind.CLIENT,
            links=[Link(apply_span)],
            start_time=started,
            attributes={
                "fanout.sink": sink,
                "fanout.event_id": str(event.event_id),
                "fanout.event_type": event.event_type,
                "fanout.aggregate_id": event.aggregate_id,
                "fanout.version": event.version,
                "fanout.outcome": outcome.outcome.value if outcome is not None else "unknown",
            },
        )
        if outcome is not None and outcome.outcome is not Outcome.DELIVERED:
            reason = redact_url(outcome.error or outcome.outcome.value)
            span.set_status(Status(StatusCode.ERROR, reason))
        span.end(end_time=ended)
