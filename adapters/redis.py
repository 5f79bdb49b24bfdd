"""Redis: ``order:{id}`` holds the order's JSON summary (status, total, item_count) with a TTL.

Version guard: a Lua script compares each stored summary's version with the new one and sets
the key (with its TTL) only when the new version is higher. One script call carries up to
``SCRIPT_KEYS`` orders and answers per order, so a batch costs a round trip or two, not one
command per event.

On Redis Cluster (``cluster: true``) a script may only touch keys of one hash slot, so a
batch's keys are grouped by slot and each group is one call to the master of its slot, many at
once; a ``MOVED`` or ``ASK`` answer or a lost node fails the group as transient and makes the
cluster client learn the slots again, so the retry finds the new master after a failover. With
``wait_for_replicas``, each call is followed on its connection by ``WAIT``, and a group counts
as delivered only once that many replicas have it: a master that dies before replicating loses
nothing the relay thinks delivered, since its promoted replica holds it (else the group is
sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from adapters.base import Delivery, EventEnvelope, Health, Outcome, Projections
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
# Script calls of one batch in flight at once on a cluster (one per hash slot), within the
# cluster client's connections per node.
CLUSTER_CALLS_IN_FLIGHT = 32

TRANSIENT_ERRORS = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    SlotNotCoveredError,
)


def slot_groups(keys: Sequence[str]) -> list[list[int]]:
    """The positions of ``keys``, grouped by hash slot (a cluster script's keys share one)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        groups[key_slot(key.encode())].append(position)
    return list(groups.values())


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
        cluster: bool = False,
        wait_for_replicas: int = 0,
        projections: Projections[dict[str, Any]] | None = None,
    ) -> None:
        self._name = name
        # A pooled connection outlives a server restart; the first command on it fails and is
        # sent again on a new connection. (Every command here is idempotent.)
        self._connection_options: dict[str, Any] = {
            "socket_timeout": timeout_seconds,
            "socket_connect_timeout": timeout_seconds,
            "decode_responses": True,
        }
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2)
        self._client: aioredis.Redis | RedisCluster
        if cluster:
            self._client = RedisCluster.from_url(url, retry=retry, **self._connection_options)
        else:
            self._client = aioredis.Redis.from_url(
                url, retry=retry, retry_on_error=[ConnectionError], **self._connection_options
            )
        self.cluster = cluster
        self.wait_for_replicas = wait_for_replicas
        # Half the socket timeout: WAIT must answer (with the count so far) before the read
        # of its answer times out.
        self._wait_ms = max(1, int(timeout_seconds * 500))
        self._node_clients: dict[str, aioredis.Redis] = {}
        self._script = self._client.register_script(SET_IF_NEWER)
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.projections = projections if projections is not None else default_projections()

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    @property
    def client(self) -> aioredis.Redis | RedisCluster:
        """The Redis client (for readers of the projection)."""
        return self._client

    async def start(self) -> None:
        """Load the script, so that calls can name it by its hash; on a cluster, whose
        masters change with failovers, see that it answers (each call sends the script)."""
        if isinstance(self._client, RedisCluster):
            await self._client.ping()
        else:
            await self._client.script_load(SET_IF_NEWER)

    async def close(self) -> None:
        """Close the connection pools."""
        for client in self._node_clients.values():
            await client.aclose()
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
        the batch allows (on a cluster, one per hash slot, all at once)."""
        results: list[Delivery] = [Delivery.ok()] * len(batch)
        calls: list[int] = []
        keys: list[str] = []
        args: list[str | int] = []
        for index, summary in self.projections.project_batch(batch, results):
            calls.append(index)
            keys.append(self.key_prefix + summary["order_id"])
            args.extend((summary["version"], json.dumps(summary)))
        if self.cluster:
            groups = [
                group[start : start + SCRIPT_KEYS]
                for group in slot_groups(keys)
                for start in range(0, len(group), SCRIPT_KEYS)
            ]
        else:
            positions = list(range(len(keys)))
            groups = [positions[i : i + SCRIPT_KEYS] for i in range(0, len(keys), SCRIPT_KEYS)]
        in_flight = asyncio.Semaphore(CLUSTER_CALLS_IN_FLIGHT)

        async def set_group(group: list[int]) -> None:
            async with in_flight:
                await self._set_group(group, calls, keys, args, results)

        if isinstance(self._client, RedisCluster):
            await self._client.initialize()  # the slots, learnt once
        await asyncio.gather(*(set_group(group) for group in groups))
        return results

    async def _set_group(
        self,
        group: list[int],
        calls: list[int],
        keys: list[str],
        args: list[str | int],
        results: list[Delivery],
    ) -> None:
        """One script call for the keys at ``group``'s positions (and its WAIT)."""
        first, last = group[0], group[-1]
        if last - first + 1 == len(group):  # a run of positions (always, off a cluster)
            group_keys = keys[first : last + 1]
            call_args: list[str | int] = [self.ttl_seconds, *args[2 * first : 2 * last + 2]]
        else:
            group_keys = [keys[position] for position in group]
            call_args = [self.ttl_seconds]
            for position in group:
                call_args.extend(args[2 * position : 2 * position + 2])
        try:
            replies, acknowledged = await self._write(group_keys, call_args)
        except RedisError as error:
            if isinstance(self._client, RedisCluster):
                # MOVED, ASK or a lost node: learn the cluster's slots again for the retry.
                with contextlib.suppress(RedisError):
                    await self._client.nodes_manager.initialize()
            outcome = classify(error)
            for position in group:
                results[calls[position]] = outcome
            return
        for position, reply in zip(group, replies, strict=True):
            if isinstance(reply, str):
                results[calls[position]] = classify(ResponseError(reply))
        if acknowledged is not None and acknowledged < self.wait_for_replicas:
            behind = Delivery.transient(
                f"{acknowledged} of {self.wait_for_replicas} replicas acknowledged in time"
            )
            for position in group:
                if results[calls[position]].outcome is Outcome.DELIVERED:
                    results[calls[position]] = behind

    async def _write(self, keys: list[str], args: list[str | int]) -> tuple[Any, int | None]:
        """The script's replies for ``keys`` and, with ``wait_for_replicas``, how many replicas
        have them. ``WAIT`` counts the replicas that have the writes of the connection it is
        sent on, so it follows the script on one connection, in one pipeline."""
        if isinstance(self._client, RedisCluster):
            client = self._node_client(keys[0])
        elif not self.wait_for_replicas:
            return await self._script(keys=keys, args=args), None
        else:
            client = self._client
        async with client.pipeline(transaction=False) as pipe:
            # EVAL, not EVALSHA: on a cluster, a replica promoted by a failover may not have
            # the script loaded.
            pipe.eval(SET_IF_NEWER, len(keys), *keys, *args)
            if self.wait_for_replicas:
                pipe.execute_command("WAIT", self.wait_for_replicas, self._wait_ms)
            answers = await pipe.execute()
        return answers[0], int(answers[1]) if self.wait_for_replicas else None

    def _node_client(self, key: str) -> aioredis.Redis:
        """A client of the master that serves ``key``'s slot (as the cluster client last
        learnt the slots)."""
        assert isinstance(self._client, RedisCluster)
        node = self._client.get_node_from_key(key)
        if node is None:
            raise SlotNotCoveredError(f"no master serves the slot of {key!r}")
        client = self._node_clients.get(node.name)
        if client is None:
            client = aioredis.Redis(host=node.host, port=int(node.port), **self._connection_options)
            self._node_clients[node.name] = client
        return client

    async def projected_orders(self, orders: Mapping[str, OrderSpan]) -> dict[str, ProjectedOrder]:
        """The stored summary of each of the ``orders``."""
        wanted = [self.key_prefix + i for i in orders]
        if isinstance(self._client, RedisCluster):
            values = await self._client.mget_nonatomic(wanted)
        else:
            values = await self._client.mget(wanted)
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
