"""``fanout backfill``: rebuild a store from PostgreSQL while the relay runs."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn

from adapters.base import Sink
from gateway.backoff import Backoff
from gateway.cli.app import (
    app,
    config_path,
    err,
    iso_time,
    out,
    run,
    settings_of,
)
from gateway.configuration.settings import Settings, default_config_path
from gateway.errors import ConfigError, GatewayError
from gateway.operations.backfill import BackfillResult, backfill
from gateway.postgres.topology import Topology
from gateway.telemetry.tracing import operation, traced


@app.command("backfill")
def backfill_command(
    context: typer.Context,
    sink: Annotated[str, typer.Option("--sink", help="The configured sink to rebuild.")],
    since: Annotated[
        str | None,
        typer.Option(help="Only orders changed since this time (ISO 8601 with its offset)."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="At most this many orders per second.", min=0.001)
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Orders per write.", min=1, max=10_000)] = 500,
    restart: Annotated[
        bool, typer.Option(help="Start again rather than resume an unfinished backfill.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Send every order's current state (or of those changed since a time) to a store, while
    relays keep delivering live events; resumes an interrupted run where it stopped."""
    from gateway.postgres.database import create_pool
    from gateway.relay.sinks import build_sink

    changed_since = iso_time(since, "--since") if since is not None else None

    async def work() -> list[BackfillResult]:
        settings = settings_of(context)
        if sink not in settings.sinks:
            source = config_path(context) or default_config_path()
            raise ConfigError(f"sinks.{sink}", "no such sink (given as --sink)", source)
        target = build_sink(sink, settings.sinks[sink])
        try:
            with traced(settings.telemetry, "command"), operation(f"backfill {sink}"):
                return await fill(settings, target)
        finally:
            await target.close()

    async def fill(settings: Settings, target: Sink) -> list[BackfillResult]:
        relay = settings.relay
        try:
            await target.start()
        except Exception as error:  # any client's own error: the store cannot be used
            raise GatewayError(f"sink {sink!r} cannot be started: {error!r}") from None
        results = []
        # In sharded mode each shard's orders in turn, each shard resuming on its own.
        for database in Topology.of(settings.postgres).order_databases:
            async with await create_pool(database.postgres) as pool:
                with Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=True,
                ) as bar:
                    task = bar.add_task(f"backfill {sink}", total=None)
                    results.append(
                        await backfill(
                            pool,
                            target,
                            since=changed_since,
                            rate=rate,
                            batch_size=batch_size,
                            restart=restart,
                            backoff=Backoff(
                                relay.backoff_initial_seconds, relay.backoff_max_seconds
                            ),
                            max_attempts=relay.max_attempts,
                            progress=partial(_advance, bar, task),
                        )
                    )
        return results

    results = run(work)
    topology = Topology.of(settings_of(context).postgres)
    sharded = topology.sharded
    names = [database.name for database in topology.order_databases]
    if as_json:
        documents = [result.as_json() for result in results]
        if sharded:
            out.print_json(json.dumps(dict(zip(names, documents, strict=True))))
        else:
            out.print_json(json.dumps(documents[0]))
    else:
        for name, result in zip(names, results, strict=True):
            resumed = f" (resumed after {result.resumed_after:,})" if result.resumed_after else ""
            where = f" from {name}" if sharded else ""
            out.print(
                f"backfill of {sink}{where}: {result.orders:,} orders sent{resumed}",
                highlight=False,
            )
            for failure in result.first_failures or []:
                err.print(f"refused by the store: {failure}", highlight=False)
    if any(result.permanent_failures for result in results):
        raise typer.Exit(1)


def _advance(bar: Progress, task: TaskID, done: int, total: int) -> None:
    bar.update(task, completed=done, total=total)
