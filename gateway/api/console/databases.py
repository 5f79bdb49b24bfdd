"""The databases behind the console: which pools have an outbox, and the state of replicas
and shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.configuration.secrets import redact_values
from gateway.facade.gateway import Gateway
from gateway.operations.health import ShardHealth, shards_health
from gateway.postgres.topology import CATALOG, SINGLE


def outbox_pools(gateway: Gateway) -> dict[str, asyncpg.Pool]:
    """Every database with an outbox and relay tables, by name: the one database, or the
    catalog and each shard."""
    if not gateway.topology.sharded:
        return {SINGLE: gateway.pool}
    return {CATALOG: gateway.pool, **gateway.sharding.shards}


@dataclass(frozen=True)
class DatabasesView:
    """Each replica's state and lag (``ReplicaState.as_dict``), each shard's health."""

    replicas: list[dict[str, Any]]
    shards: list[ShardHealth]
    sharded: bool


async def databases_view(gateway: Gateway, timeout_seconds: float) -> DatabasesView:
    """The replicas as last checked and every shard's health, asked now; addresses and
    errors, which can hold a URL, with their secrets masked."""
    max_lag = gateway.settings.postgres.replica_max_lag_seconds
    replicas = [redact_values(replica.as_dict(max_lag)) for replica in gateway.replicas]
    sharded = gateway.topology.sharded
    shards = await shards_health(gateway.sharding.shards, timeout_seconds) if sharded else []
    return DatabasesView(replicas, shards, sharded)
