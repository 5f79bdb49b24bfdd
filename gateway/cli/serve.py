"""``fanout serve``: run the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from gateway.api.exposure import check_exposure
from gateway.api.server import api_server, serve_until_stopped, serve_with_workers
from gateway.cli.app import app, config_path, configure_logging, err, run, settings_of
from gateway.configuration.secrets import redact_url
from gateway.configuration.settings import Settings, default_config_path
from gateway.errors import GatewayError


@app.command("serve")
def serve(
    context: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default: api.host).")] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Listen port (default: api.port; 0: any free port).", min=0, max=65535),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes sharing the port (default: api.workers).", min=1),
    ] = None,
) -> None:
    """Serve the HTTP API until SIGTERM or SIGINT (then finish open requests and exit 0)."""

    async def work() -> Settings:
        settings = settings_of(context)
        file = config_path(context) or default_config_path()
        check_exposure(settings.api, host, file if file.exists() else None)
        return settings

    settings = run(work)
    configure_logging(settings.logging.level)
    processes = settings.api.workers if workers is None else workers
    if processes > 1:
        serve_with_workers(
            settings,
            config_path(context),
            processes,
            host=host,
            port=port,
            access_log=access_log,
        )
        return
    server = api_server(settings, host=host, port=port, access_log=access_log)
    try:
        started = serve_until_stopped(server)
    except GatewayError as error:
        err.print(
            f"[red]error:[/red] {escape(redact_url(str(error)))}", markup=True, highlight=False
        )
        raise typer.Exit(1) from None
    if not started:
        raise typer.Exit(1)
