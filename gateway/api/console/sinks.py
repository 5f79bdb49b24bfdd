"""The sinks page's data: each sink's store health, backlog and delivery rate, its lag over
the last hour, and its dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from adapters.base import Sink
from gateway.api.console.chart import LineChart, line_chart
from gateway.api.console.lag import LagHistory, SinkSample, delivery_rate, take_sample
from gateway.configuration.secrets import redact_url
from gateway.operations.health import store_health
from gateway.relay import tables

DEAD_LETTERS_SHOWN = 100


@dataclass(frozen=True)
class SinkRow:
    """One sink's line on the page, with its charts."""

    name: str
    configured: bool
    ok: bool | None
    """Whether its store answers (``None``: not configured here, so not asked)."""
    detail: str
    now: SinkSample | None
    """Its backlog and counters across the databases (``None``: not registered yet)."""
    deliveries_per_second: float | None
    backlog_chart: LineChart
    lag_chart: LineChart


@dataclass(frozen=True)
class SinksView:
    """Every sink with its charts, and the dead letters not yet replayed."""

    sinks: list[SinkRow]
    dead_letters: list[dict[str, Any]]
    """``tables.list_dead_letters`` rows, each with the name of its ``database``."""


def sink_names(configured: Sequence[str], registered: Sequence[str]) -> list[str]:
    """The configured sinks in their order, then those only the outbox knows (a sink removed
    from the configuration still holds back pruning until it is retired)."""
    return [*configured, *sorted(set(registered) - set(configured))]


def sink_charts(history: LagHistory, sink: str, end: float) -> tuple[LineChart, LineChart]:
    """The backlog (events) and lag (oldest undelivered age, seconds) of ``sink`` over the
    span ``history`` keeps."""
    samples = [s for s in history.samples() if sink in s.sinks]
    backlog = [(s.at, float(s.sinks[sink].backlog)) for s in samples]
    lag = [(s.at, s.sinks[sink].oldest_undelivered_seconds or 0.0) for s in samples]
    span = history.span_seconds
    return line_chart(backlog, end, span), line_chart(lag, end, span)


async def sinks_view(
    pools: Mapping[str, asyncpg.Pool],
    sinks: Mapping[str, Sink],
    history: LagHistory,
    timeout_seconds: float,
) -> SinksView:
    """Every sink, configured or only registered in the outbox: its store's answer (asked
    concurrently), its backlog now, its rate and charts from ``history``; and every
    database's dead letters."""
    answers, current = await asyncio.gather(
        asyncio.gather(*(store_health(sink, timeout_seconds) for sink in sinks.values())),
        take_sample(list(pools.values()), timeout_seconds),
    )
    health = dict(zip(sinks, answers, strict=True))
    samples = history.samples()
    rows = []
    for name in sink_names(list(sinks), list(current.sinks)):
        answer = health.get(name)
        rows.append(
            SinkRow(
                name,
                name in sinks,
                answer.ok if answer else None,
                redact_url(answer.detail) if answer else "not configured in this server",
                current.sinks.get(name),
                delivery_rate(samples, name),
                *sink_charts(history, name, current.at),
            )
        )
    return SinksView(rows, await dead_letters(pools, timeout_seconds))


async def dead_letters(
    pools: Mapping[str, asyncpg.Pool], timeout_seconds: float
) -> list[dict[str, Any]]:
    """Up to :data:`DEAD_LETTERS_SHOWN` dead letters not yet replayed, of each database."""
    found: list[dict[str, Any]] = []
    for name, pool in pools.items():
        async with asyncio.timeout(timeout_seconds), pool.acquire() as connection:
            letters = await tables.list_dead_letters(connection, None, DEAD_LETTERS_SHOWN)
        found += [letter | {"database": name} for letter in letters]
    return found
