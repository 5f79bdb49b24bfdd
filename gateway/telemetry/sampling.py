"""Which spans are recorded: a trace starts at an entry point (a request, a relay batch, a
command) and is kept at the configured ratio, or when it links to a recorded trace; a span
with a parent follows the parent."""

from __future__ import annotations

import random
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


def starts_a_trace(kind: SpanKind | None) -> bool:
    """Whether a span without a parent may start a trace: not a client call (a statement the
    pool runs on its own, such as a replica's lag check), which would make a trace of one
    span for every background query."""
    return kind is not SpanKind.CLIENT


def links_a_recorded_trace(links: Sequence[Link] | None) -> bool:
    """Whether a new span links to a recorded trace (a relay's batch holding an event of a
    recorded order): kept then, so that the order's delivery spans link to a recorded apply."""
    return any(link.context.trace_flags.sampled for link in links or ())


class EntryPoints(Sampler):
    """The sampler of spans without a parent: client calls are dropped, the others kept at
    ``ratio`` (by trace id, so every process of a trace decides alike)."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if links_a_recorded_trace(links):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        if not starts_a_trace(kind):
            return SamplingResult(Decision.DROP, None, trace_state)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"EntryPoints{{{self._ratio.get_description()}}}"


def sampler(ratio: float, *, trust_callers: bool = True) -> Sampler:
    """The gateway's sampler: the parent's choice when the span has a parent in this process;
    for a caller's (remote) parent, the caller's choice if ``trust_callers``, else the ratio;
    else :class:`EntryPoints` at ``ratio``."""
    entry_points = EntryPoints(ratio)
    if trust_callers:
        return ParentBased(root=entry_points)
    # Not by the trace id: a caller chooses it, and one ending in zeros would always be kept.
    by_chance = ByChance(ratio)
    return ParentBased(
        root=entry_points, remote_parent_sampled=by_chance, remote_parent_not_sampled=by_chance
    )


class ByChance(Sampler):
    """Keeps a span at ``ratio`` by a draw of its own (for a caller's trace, whose id the
    caller chose)."""

    def __init__(self, ratio: float) -> None:
        self._ratio = ratio
        self._draw = random.Random()

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        kept = self._draw.random() < self._ratio
        decision = Decision.RECORD_AND_SAMPLE if kept else Decision.DROP
        # The caller's trace state goes on with its trace (the SDK passes none to a sampler).
        state = trace.get_current_span(parent_context).get_span_context().trace_state
        return SamplingResult(decision, attributes if kept else None, state)

    def get_description(self) -> str:
        return f"ByChance{{{self._ratio}}}"
