"""Serving the API: uvicorn configured from the settings, in one process or several sharing
the port, with a graceful stop on SIGTERM."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.api.app import create_app
from gateway.configuration.secrets import RedactingFormatter
from gateway.configuration.settings import CONFIG_PATH_VARIABLE, Settings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""Where worker processes write their metrics, for ``/metrics`` to add them up (the
prometheus_client multiprocess mode)."""


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``, with times and logger names, secrets masked."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def api_server(
    settings: Settings, *, host: str | None = None, port: int | None = None, access_log: bool
) -> uvicorn.Server:
    """A server of the API on ``host``:``port`` (default: the ``api`` settings)."""
    return uvicorn.Server(
        uvicorn.Config(create_app(settings), **_options(settings, host, port, access_log))
    )


def serve_until_stopped(server: uvicorn.Server) -> bool:
    """Run ``server`` until SIGTERM or SIGINT (open requests finish first); whether it started.

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again for the previous
    handler; the handler installed here turns that into a normal exit.
    """
    signal.signal(signal.SIGTERM, _exit_normally)
    server.run()
    return bool(server.started)


def serve_with_workers(
    settings: Settings,
    config_path: Path | None,
    workers: int,
    *,
    host: str | None = None,
    port: int | None = None,
    access_log: bool,
) -> None:
    """Serve the API from ``workers`` processes sharing one listening socket, until SIGTERM
    or SIGINT stops them all (each finishing its open requests).

    Each worker loads the same settings (``config_path`` and the environment) and writes its
    metrics where ``/metrics`` of any worker adds up every worker's.
    """
    if config_path is not None:
        os.environ[CONFIG_PATH_VARIABLE] = str(config_path.resolve())
    with metrics_directory():
        uvicorn.run(
            "gateway.api.server:app_from_environment",
            factory=True,
            workers=workers,
            **_options(settings, host, port, access_log),
        )


def app_from_environment() -> FastAPI:
    """The API of the settings in the environment: what each worker process serves."""
    settings = load_settings()
    configure_logging(settings.logging.level)
    return create_app(settings)


@contextmanager
def metrics_directory() -> Iterator[Path]:
    """A directory for the workers' metrics: the one named by ``PROMETHEUS_MULTIPROC_DIR``
    (emptied first: its files are a previous run's), else a temporary one, removed after."""
    given = os.environ.get(METRICS_DIRECTORY_VARIABLE)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="fanout-metrics-"))
    os.environ[METRICS_DIRECTORY_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        del os.environ[METRICS_DIRECTORY_VARIABLE]
        shutil.rmtree(directory, ignore_errors=True)


def _options(
    settings: Settings, host: str | None, port: int | None, access_log: bool
) -> dict[str, Any]:
    return {
        "host": host or settings.api.host,
        "port": settings.api.port if port is None else port,
        "log_config": None,
        "access_log": access_log,
        "server_header": False,
        "timeout_keep_alive": settings.api.keep_alive_seconds,
        "timeout_graceful_shutdown": int(settings.relay.shutdown_timeout_seconds),
    }


def _exit_normally(signal_number: int, frame: object) -> None:
    raise SystemExit(0)
