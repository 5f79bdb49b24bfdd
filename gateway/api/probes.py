"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import os
from typing import Any

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

from gateway.operations.health import postgres_health, sinks_health
from gateway.postgres.replicas import primary_replication

probes = APIRouter(tags=["operations"])
metrics = APIRouter(tags=["operations"])


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving (touches nothing else)."""
    return {"status": "ok"}


@probes.get(
    "/readyz",
    responses={503: {"description": "PostgreSQL cannot be reached"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when PostgreSQL answers; each sink's health and backlog, and each replica's state
    and lag, are given as detail.

    A sink that is down does not make the API unready: orders are still accepted and the
    relay delivers them when the store returns.
    """
    state = request.app.state
    timeout: float = state.settings.api.health_timeout_seconds
    database = await postgres_health(state.gateway.pool, timeout)
    sinks = await sinks_health(state.gateway.pool if database.ok else None, state.sinks, timeout)
    standbys = await standbys_of(state.gateway.pool, timeout) if database.ok else []
    body: dict[str, Any] = {
        "status": "ready" if database.ok else "unavailable",
        "postgres": {
            "ok": database.ok,
            "detail": database.detail,
            "latency_ms": database.latency_ms,
        },
        "sinks": [sink.as_dict() for sink in sinks],
        "replicas": [
            replica.as_dict(state.settings.postgres.replica_max_lag_seconds)
            for replica in state.gateway.replicas
        ],
        "standbys": standbys,
    }
    return JSONResponse(body, status_code=200 if database.ok else 503)


async def standbys_of(pool: asyncpg.Pool, within_seconds: float) -> list[dict[str, object]]:
    """The primary's view of its standbys; empty if it cannot be had in time."""
    try:
        async with asyncio.timeout(within_seconds), pool.acquire() as connection:
            return await primary_replication(connection)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return []


@metrics.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus text exposition of the server's metrics: of every worker process when there
    are several (added up from the files they write), else of this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
