"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import BaseModel

from gateway.api.auth import authorized
from gateway.configuration.secrets import redact_values
from gateway.facade.gateway import Gateway
from gateway.operations.health import postgres_health, readiness, shards_health, sinks_health
from gateway.postgres.cluster import primary_view
from gateway.postgres.database import UNANSWERED_ERRORS
from gateway.version import version

probes = APIRouter(tags=["operations"])
metrics = APIRouter(tags=["operations"])


class Health(BaseModel):
    """``/healthz``'s answer: the process serves, and which version of the gateway it runs."""

    status: Literal["ok"]
    version: str


@probes.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving (touches nothing else), and the version it runs."""
    return Health(status="ok", version=version())


@probes.get(
    "/readyz",
    responses={503: {"description": "PostgreSQL (in sharded mode, the catalog) cannot be reached"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when PostgreSQL answers. With the API key (or when none is configured), each
    sink's health and backlog, which node is the primary (its timeline and last promotion),
    and each replica's and standby's state and lag, are given as detail; without
    it, only the status. In sharded mode PostgreSQL is the catalog, and each shard's state and
    backlog are given too: a shard that does not answer makes the status ``degraded``, still
    200, since every other shard's customers are served.

    A sink that is down does not make the API unready: orders are still accepted and the
    relay delivers them when the store returns.
    """
    state = request.app.state
    gateway: Gateway | None = state.connection.gateway
    if gateway is None:
        return not_connected(request)
    timeout: float = state.settings.api.health_timeout_seconds
    pools = shard_pools(gateway)
    database, shards = await asyncio.gather(
        postgres_health(gateway.pool, timeout), shards_health(pools, timeout)
    )
    status = readiness(database.ok, [shard.ok for shard in shards])
    status_code = 200 if database.ok else 503
    if not authorized(request.headers.get("authorization"), state.settings.api.key):
        return JSONResponse({"status": status}, status_code=status_code)
    sinks = await sinks_health(gateway.pool if database.ok else None, state.sinks, timeout)
    primary = await primary_of(gateway.pool, timeout) if database.ok else {}
    standbys = primary.pop("standbys", [])
    body: dict[str, Any] = {
        "status": status,
        "postgres": {
            "ok": database.ok,
            "detail": database.detail,
            "latency_ms": database.latency_ms,
            "primary": primary or None,
        },
        "sinks": [sink.as_dict() for sink in sinks],
        "replicas": [
            replica.as_dict(state.settings.postgres.replica_max_lag_seconds)
            for replica in gateway.replicas
        ],
        "standbys": standbys,
    }
    if pools:
        body["shards"] = [shard.as_dict() for shard in shards]
    # Replica addresses and client errors can hold a URL.
    return JSONResponse(redact_values(body), status_code=status_code)


def not_connected(request: Request) -> JSONResponse:
    """503 while the API has not yet connected to PostgreSQL since it started; with the API key
    (or when none is configured), saying so."""
    body: dict[str, Any] = {"status": readiness(False, [])}
    if authorized(request.headers.get("authorization"), request.app.state.settings.api.key):
        body["postgres"] = {"ok": False, "detail": "not connected yet", "latency_ms": None}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


def shard_pools(gateway: Gateway) -> Mapping[str, asyncpg.Pool]:
    """Each shard's pool in sharded mode; none otherwise."""
    return gateway.sharding.shards if gateway.topology.sharded else {}


async def primary_of(pool: asyncpg.Pool, within_seconds: float) -> dict[str, Any]:
    """Which node is the primary, its timeline and last promotion, and its view of its
    standbys (:func:`~gateway.postgres.cluster.primary_view`); empty if it cannot be had in
    time."""
    try:
        async with asyncio.timeout(within_seconds), pool.acquire() as connection:
            return await primary_view(connection)
    except UNANSWERED_ERRORS:
        return {}


@metrics.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus text exposition of the server's metrics: of every worker process when there
    are several (added up from the files they write), else of this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
