"""Redis: ``order:{id}`` holds the order's JSON summary (status, total, item_count) with a TTL.

Version guard: a Lua script compares each stored summary's version with the new one and sets
the key (with its TTL) only when the new version is higher. One script call carries up to
``SCRIPT_KEYS`` orders and answers per order, so a batch costs a round trip or two, not one
command per event. The keys of one call may lie in different hash slots, so the sink is for a
standalone Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
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

# KEYS: the orders' keys. ARGV[1]: the TTL in seconds; then, per key, its new version and
# summary JSON. Answers per key: 1 if written, 0 if the stored version is as new or newer, or
# the error text of a command that failed on that key (such as WRONGTYPE), so one bad key
# fails alone.
SET_IF_NEWER = """
local ttl = ARGV[1]
local results = {}
for i, key in ipairs(KEYS) do
    local version = tonumber(ARGV[2 * i])
    local stored = redis.pcall('GET', key)
    if type(stored) == 'table' and stored.err then
        results[i] = stored.err
    else
        local newer = true
        if stored then
            local ok, decoded = pcall(cjson.decode, stored)
            if ok and type(decoded) == 'table' and decoded['version'] and
               tonumber(decoded['version']) >= version then
                newer = false
            end
        end
        if newer then
            local reply = redis.pcall('SET', key, ARGV[2 * i + 1], 'EX', ttl)
            if type(reply) == 'table' and reply.err then
                results[i] = reply.err
            else
                results[i] = 1
            end
        else
            results[i] = 0
        end
    end
end
return results
"""
# Bounds how long one script call keeps the (single-threaded) server busy.
SCRIPT_KEYS = 500

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
            # A pooled connection outlives a server restart; the first command on it fails
            # and is sent again on a new connection. (Every command here is idempotent.)
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            retry_on_error=[ConnectionError],
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
        """Load the script, so that calls can name it by its hash."""
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
        """Set the summary of every order event, version-guarded, in as few script calls as
        the batch allows."""
        results: list[Delivery] = [Delivery.ok()] * len(batch)
        calls: list[int] = []
        keys: list[str] = []
        args: list[str | int] = []
        for index, summary in self.projections.project_batch(batch, results):
            calls.append(index)
            keys.append(self.key_prefix + summary["order_id"])
            args.extend((summary["version"], json.dumps(summary)))
        for start in range(0, len(calls), SCRIPT_KEYS):
            end = start + SCRIPT_KEYS
            try:
                replies = await self._script(
                    keys=keys[start:end], args=[self.ttl_seconds, *args[2 * start : 2 * end]]
                )
            except RedisError as error:
                outcome = classify(error)
                for index in calls[start:end]:
                    results[index] = outcome
                continue
            for index, reply in zip(calls[start:end], replies, strict=True):
                if isinstance(reply, str):
                    results[index] = classify(ResponseError(reply))
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
