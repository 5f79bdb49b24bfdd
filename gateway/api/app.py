"""The ASGI application of ``fanout serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

import gateway
from adapters.base import Sink
from gateway.api.asyncapi import asyncapi
from gateway.api.auth import ApiKeyCheck
from gateway.api.connection import GatewayConnection
from gateway.api.console import console
from gateway.api.exposure import LocalHostNamesOnly
from gateway.api.middleware import BodySizeLimit, RequestMetrics
from gateway.api.openapi import install_openapi
from gateway.api.probes import metrics, probes
from gateway.api.problems import install_problem_handlers
from gateway.api.routes import problem_responses, router
from gateway.api.webhooks import webhooks
from gateway.configuration.settings import Settings
from gateway.relay.sinks import enabled_sinks
from gateway.telemetry.tracing import start_tracing, stop_tracing

UNTRACED_PATHS = "/healthz,/readyz,/metrics"
"""The probes and the metrics scrape: asked every few seconds, a trace of each is noise."""


def create_app(settings: Settings) -> FastAPI:
    """The HTTP API over the gateway configured by ``settings``.

    On startup it opens the gateway's PostgreSQL pool and builds a client of every enabled sink
    (for the readiness probe); both are closed on shutdown. While PostgreSQL (in sharded mode,
    the catalog) cannot be reached, the API starts anyway and keeps connecting in the
    background: ``/healthz`` answers 200, ``/readyz`` and every database route 503. With
    ``api.key`` set, every route but ``/healthz``, ``/readyz``, the OpenAPI document and the
    payment webhook (which is signed instead) needs ``Authorization: Bearer``; the operator
    console (``/console``) asks for the key in a login form instead. Without a key (and
    without ``api.allow_unauthenticated``) it answers only requests whose ``Host`` names this
    machine or ``api.host`` (403 otherwise), so that no other site's page reaches it through a
    name pointed at 127.0.0.1.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sinks: dict[str, Sink] = enabled_sinks(settings)
        app.state.settings = settings
        app.state.sinks = sinks
        connection = GatewayConnection(settings)
        app.state.connection = connection
        try:
            await connection.start()
            yield
        finally:
            await connection.close()
            for sink in sinks.values():
                await sink.close()
            stop_tracing()

    app = FastAPI(
        title="fanout gateway",
        version=gateway.__version__,
        summary="Orders in PostgreSQL, their events relayed to every read-side store.",
        lifespan=lifespan,
        redoc_url=None,
    )
    guarded = [Depends(ApiKeyCheck(settings.api.key))] if settings.api.key else []
    unauthorized = problem_responses(401) if settings.api.key else {}
    app.include_router(router, dependencies=guarded, responses=unauthorized)
    app.include_router(metrics, dependencies=guarded, responses=unauthorized)
    app.include_router(asyncapi, dependencies=guarded, responses=unauthorized)
    app.include_router(webhooks)
    app.include_router(probes)
    app.include_router(console)
    install_problem_handlers(app)
    install_openapi(app, settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(RequestMetrics)
    if settings.api.key is None and not settings.api.allow_unauthenticated:
        app.add_middleware(LocalHostNamesOnly, api_host=settings.api.host)
    provider = start_tracing(settings.telemetry, "api")
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=provider,
            excluded_urls=UNTRACED_PATHS,
            exclude_spans=["receive", "send"],  # a span per ASGI message: noise
        )
    return app
