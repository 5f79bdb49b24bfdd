"""``fanout serve``, ``relay``, ``demo`` and ``config``: running the gateway."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated

import typer
from prometheus_client import start_http_server
from rich.markup import escape

from gateway.api.exposure import check_exposure
from gateway.api.server import api_server, serve_until_stopped, serve_with_workers
from gateway.backoff import Backoff
from gateway.cli.app import app, config_path, configure_logging, err, out, run, settings_of
from gateway.configuration.secrets import redact_url
from gateway.configuration.settings import Settings, default_config_path
from gateway.errors import GatewayError
from gateway.facade.gateway import Gateway
from gateway.operations.demo import LIFE, place_demo_order, walk_demo_order
from gateway.postgres.topology import Topology
from gateway.postgres.waiting import wait_for_postgres
from gateway.relay import Relay, collector
from gateway.sharding.relays import ShardedRelay
from gateway.write_path.models import Order


@app.command("config")
def show_config(context: typer.Context) -> None:
    """Print the effective configuration (file plus environment), passwords redacted."""

    async def work() -> Settings:
        return settings_of(context)

    settings = run(work)
    # str() of a SecretUrl is the URL with its password redacted.
    out.print_json(json.dumps(settings.model_dump(), default=str))


@app.command("demo")
def demo(
    context: typer.Context,
    orders: Annotated[int, typer.Option(help="How many orders to place.", min=1, max=1000)] = 1,
    walk: Annotated[
        bool,
        typer.Option(
            "--walk", help="Move the first order through confirmed, processing, shipped, delivered."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the orders as JSON.")] = False,
) -> None:
    """Place demo orders (seeding a demo customer and product on first use)."""

    async def work() -> list[Order]:
        async with await Gateway.connect(settings_of(context)) as gateway:
            placed = [await place_demo_order(gateway) for _ in range(orders)]
            if walk:
                placed[0] = await walk_demo_order(gateway, placed[0])
            return placed

    placed = run(work)
    if as_json:
        out.print_json(json.dumps([order.model_dump(mode="json") for order in placed]))
        return
    for order in placed:
        out.print(
            f"placed order {order.order_number} ({order.id}): {order.status}, v{order.version}",
            soft_wrap=True,
        )
    if walk:
        first = placed[0]
        out.print(
            f"walked order {first.order_number} ({first.id}) through {', '.join(LIFE)}",
            soft_wrap=True,
        )


@app.command("relay")
def relay(
    context: typer.Context,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Drain every sink, then exit.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port.", min=1, max=65535),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address for the metrics server.")
    ] = "127.0.0.1",
) -> None:
    """Relay outbox events to every enabled sink until SIGTERM or SIGINT."""

    async def work() -> None:
        settings = settings_of(context)
        configure_logging(settings.logging.level)
        if metrics_port is not None:
            start_http_server(metrics_port, addr=metrics_host)
        stop_asked = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop_asked.set)
        relay = await connect_relay(settings, stop_asked, collect_stats=metrics_port is not None)
        if relay is None:
            return
        async with relay:
            collector.tune_for_relay()
            for signal_number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signal_number, relay.stop)
            if stop_asked.is_set():
                relay.stop()
            await relay.run(until_idle=until_idle)

    run(work)


async def connect_relay(
    settings: Settings, stop_asked: asyncio.Event, *, collect_stats: bool
) -> Relay | ShardedRelay | None:
    """The configured relay, connected once PostgreSQL (in sharded mode, the catalog) answers:
    until then it waits and tries again, with backoff; ``None`` if a stop is asked first."""

    async def attempt() -> Relay | ShardedRelay:
        if Topology.of(settings.postgres).sharded:
            return await ShardedRelay.connect(settings, collect_stats=collect_stats)
        return await Relay.connect(settings, collect_stats=collect_stats)

    return await wait_for_postgres(
        attempt,
        url=settings.postgres.url.get_secret_value(),
        backoff=Backoff(settings.relay.backoff_initial_seconds, settings.relay.backoff_max_seconds),
        stopping=stop_asked,
    )


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
