"""``fanout relay``: run the relay."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from prometheus_client import start_http_server

from gateway.backoff import Backoff
from gateway.cli.app import app, configure_logging, run, settings_of
from gateway.configuration.settings import Settings
from gateway.postgres.topology import Topology
from gateway.postgres.waiting import wait_for_postgres
from gateway.relay import Relay, collector
from gateway.sharding.relays import ShardedRelay
from gateway.telemetry.tracing import traced


@app.command("relay")
def relay(
    context: typer.Context,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle", help="Deliver every committed event to every sink, then exit."
        ),
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
        with traced(settings.telemetry, "relay"):
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
