"""Serving the API: uvicorn configured from the settings, with a graceful stop on SIGTERM."""

from __future__ import annotations

import signal

import uvicorn

from gateway.api.app import create_app
from gateway.configuration.settings import Settings


def api_server(
    settings: Settings, *, host: str | None = None, port: int | None = None, access_log: bool
) -> uvicorn.Server:
    """A server of the API on ``host``:``port`` (default: the ``api`` settings)."""
    return uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=host or settings.api.host,
            port=settings.api.port if port is None else port,
            log_config=None,
            access_log=access_log,
            server_header=False,
            timeout_keep_alive=settings.api.keep_alive_seconds,
            timeout_graceful_shutdown=int(settings.relay.shutdown_timeout_seconds),
        )
    )


def serve_until_stopped(server: uvicorn.Server) -> bool:
    """Run ``server`` until SIGTERM or SIGINT (open requests finish first); whether it started.

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again for the previous
    handler; the handler installed here turns that into a normal exit.
    """
    signal.signal(signal.SIGTERM, _exit_normally)
    server.run()
    return bool(server.started)


def _exit_normally(signal_number: int, frame: object) -> None:
    raise SystemExit(0)
