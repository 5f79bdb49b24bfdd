"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from gateway.operations.health import postgres_health, sinks_health

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
    """Ready when PostgreSQL answers; each sink's health and backlog are given as detail.

    A sink that is down does not make the API unready: orders are still accepted and the
    relay delivers them when the store returns.
    """
    state = request.app.state
    timeout: float = state.settings.api.health_timeout_seconds
    database = await postgres_health(state.gateway.pool, timeout)
    sinks = await sinks_health(state.gateway.pool if database.ok else None, state.sinks, timeout)
    body: dict[str, Any] = {
        "status": "ready" if database.ok else "unavailable",
        "postgres": {
            "ok": database.ok,
            "detail": database.detail,
            "latency_ms": database.latency_ms,
        },
        "sinks": [sink.as_dict() for sink in sinks],
    }
    return JSONResponse(body, status_code=200 if database.ok else 503)


@metrics.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
