"""Redis: ``order:{id}`` holds the order's JSON summary (status, total, item_count) with a TTL.

Version guard: a Lua script compares the stored summary's version with the new one and sets
the key (with its TTL) only when the new version is higher. The batch goes in one pipeline.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from adapters.base import Delivery, EventEnvelope, Health, Projections
from adapters.projections import ORDER_EVENT_TYPES, order_summary
from adapters.readback import OrderSpan, ProjectedOrder

# KEYS[1]: the order's key. ARGV: new version, summary JSON, TTL in seconds.
# Returns 1 if written, 0 if the stored version is as new or newer.
SET_IF_NEWER = """
local stored = redis.call('GET', KEYS[1])
if stored then
    local ok, decoded = pcall(cjson.decode, stored)
    if ok and type(decoded) == 'table' and decoded['version'] and
       tonumber(decoded['version']) >= tonumber(ARGV[1]) then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

TRANSIENT_ERRORS = (ConnectionError, TimeoutError, BusyLoadingError, TryAgainError)


def default_projections() -> Projections[dict[str, Any]]:
    """Order events projected to their summaries."""
    projections: Projections[dict[str, Any]] = Projections()
    for event_type in ORDER_EVENT_TYPES:
        projections.register(event_type, order_summary)
    return projections


def classify(error: BaseException) -> Delivery:
    """Transient for connection loss, timeouts, loading and cluster retries; else permanent."""
    if isinstance(error, TRANSIENT_ERRORS):
        return Delivery.transient(f"{type(error).__name__}: {error}")
    if isinstance(error, ResponseError) and str(error).startswith(("LOADING", "BUSY", "TRYAGAIN")):
        return Delivery.transient(f"{type(error).__name__}: {error}")
    return Delivery.permanent(f"{type(error).__name__}: {error}")


class RedisSink:
    """Sets version-guarded order summaries with a TTL."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        key_prefix: str = "order:",
        ttl_seconds: int = 3600,
        timeout_seconds: float = 10.0,
        projections: Projections[dict[str, Any]] | None = None,
    ) -> None:
        self._name = name
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            decode_responses=True,
        )
        self._script = self._client.register_script(SET_IF_NEWER)
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.projections = projections if projections is not None else default_projections()

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client (for readers of the projection)."""
        return self._client

    async def start(self) -> None:
        """Load the script, so the pipeline can call it by its hash."""
        await self._client.script_load(SET_IF_NEWER)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def health(self) -> Health:
        """PING the server."""
        try:
            await self._client.ping()
        except RedisError as error:
            return Health(False, f"{type(error).__name__}: {error}")
        return Health(True, "PONG")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        """Run the version-guarded SET of every order event in one pipeline."""
        results: list[Delivery] = [Delivery.ok()] * len(batch)
        calls: list[int] = []
        # The context manager resets the pipeline (and returns its connection) on every path.
        async with self._client.pipeline(transaction=False) as pipeline:
            for index, event in enumerate(batch):
                try:
                    summary = self.projections.project(event)
                except (KeyError, TypeError, ValueError) as error:
                    results[index] = Delivery.permanent(f"projection failed: {error}")
                    continue
                if summary is None:
                    continue
                await self._script(  # on a pipeline this queues the call
                    keys=[self.key_prefix + summary["order_id"]],
                    args=[summary["version"], json.dumps(summary), self.ttl_seconds],
                    client=pipeline,
                )
                calls.append(index)
            if not calls:
                return results
            try:
                replies = await pipeline.execute(raise_on_error=False)
            except RedisError as error:
                outcome = classify(error)
                for index in calls:
                    results[index] = outcome
                return results
        for index, reply in zip(calls, replies, strict=True):
            if isinstance(reply, BaseException):
                results[index] = classify(reply)
        return results

    async def projected_orders(self, orders: Mapping[str, OrderSpan]) -> dict[str, ProjectedOrder]:
        """The stored summary of each of the ``orders``."""
        values = await self._client.mget([self.key_prefix + i for i in orders])
        found: dict[str, ProjectedOrder] = {}
        for order_id, value in zip(orders, values, strict=True):
            if value is not None:
                summary = json.loads(value)
                found[order_id] = ProjectedOrder(
                    summary["version"], summary["status"], summary["total"]
                )
        return found

    async def projected_ids(self, batch_size: int) -> AsyncIterator[list[str]]:
        """Every order id with a summary, in batches (SCAN order)."""
        batch: list[str] = []
        async for key in self._client.scan_iter(match=self.key_prefix + "*", count=batch_size):
            batch.append(key[len(self.key_prefix) :])
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
