"""Scatter-gather: one query on every shard in parallel, each bounded by a timeout; the
shards that do not answer are named, never silently left out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.postgres.database import is_unavailability

T = TypeVar("T")


@dataclass(frozen=True)
class Gathered(Generic[T]):
    """Each answering shard's result, and why each other shard gave none."""

    results: dict[str, T]
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """Whether some shard's result is missing."""
        return bool(self.missing)


async def scatter(
    queries: Mapping[str, Callable[[], Awaitable[T]]], timeout_seconds: float
) -> Gathered[T]:
    """Run every shard's query at once; a shard that is unreachable, fails or takes longer than
    ``timeout_seconds`` is missing (with the reason). Errors of the query itself (a bug, not an
    outage) are raised."""

    async def bounded(query: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.wait_for(query(), timeout_seconds)

    names = list(queries)
    outcomes = await asyncio.gather(
        *(bounded(queries[name]) for name in names), return_exceptions=True
    )
    results: dict[str, T] = {}
    missing: dict[str, str] = {}
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, TimeoutError):
            missing[name] = f"no answer within {timeout_seconds:g}s"
        elif isinstance(outcome, BaseException):
            if not is_unavailability(outcome):
                raise outcome
            missing[name] = f"{type(outcome).__name__}: {outcome}".rstrip(": ")
        else:
            results[name] = outcome
    return Gathered(results, missing)
