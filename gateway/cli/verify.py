"""``fanout verify``: drift between PostgreSQL and the stores, or between each order and
its stream of events."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli import render
from gateway.cli.app import app, err, out, run, settings_of
from gateway.history.check import FoldCheck, check_folds
from gateway.operations.verify import Drift, verify_configured
from gateway.operations.verify_log import LogDrift
from gateway.postgres.database import create_pool
from gateway.postgres.topology import Topology


@app.command("verify")
def verify_command(
    context: typer.Context,
    sink: Annotated[
        list[str] | None, typer.Option("--sink", help="Only this sink (repeatable).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Orders compared per request.", min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    from_replica: Annotated[
        bool, typer.Option(help="Read PostgreSQL's orders from a streaming replica.")
    ] = False,
    events: Annotated[
        bool,
        typer.Option(
            "--events",
            help="Instead of the sinks: fold every order's event stream and compare it with "
            "the order.",
        ),
    ] = False,
) -> None:
    """Compare PostgreSQL's orders with each sink (or, with --events, with the fold of their
    events); exit 1 on any difference."""
    if events:
        verify_events(context, batch_size, as_json)
        return

    async def work() -> list[Drift | LogDrift]:
        return await verify_configured(
            settings_of(context), sink, batch_size, from_replica=from_replica
        )

    results = run(work)
    if as_json:
        out.print_json(json.dumps([drift.counts() for drift in results]))
    else:
        stores = [r for r in results if isinstance(r, Drift)]
        logs = [r for r in results if isinstance(r, LogDrift)]
        if stores:
            out.print(render.drift_table(stores))
        if logs:
            out.print(render.log_drift_table(logs))
    for line in render.unreadable_lines(results):
        err.print(line, highlight=False, markup=False)
    if not all(drift.clean for drift in results):
        raise typer.Exit(1)


def verify_events(context: typer.Context, batch_size: int, as_json: bool) -> None:
    """``verify --events``: every order against the fold of its stream."""

    async def work() -> FoldCheck:
        pools = []
        try:
            for database in Topology.of(settings_of(context).postgres).order_databases:
                pools.append(await create_pool(database.postgres))
            return await check_folds(pools, batch_size)
        finally:
            for pool in pools:
                await pool.close()

    check = run(work)
    if as_json:
        out.print_json(json.dumps(check.as_json()))
    else:
        out.print(render.fold_check_table(check))
    if not check.clean:
        raise typer.Exit(1)
