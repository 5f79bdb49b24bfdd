"""``fanout sinks``: list the sinks the outbox tracks; retire removed ones."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from gateway.cli import render
from gateway.cli.app import (
    DatabaseOption,
    connection_of,
    err,
    out,
    run,
    settings_of,
    sinks_app,
)
from gateway.operations.sinks import registered_sinks
from gateway.relay import tables


@sinks_app.command("list")
def sinks_list(
    context: typer.Context,
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every sink with positions in the outbox: configured here or not, served or not."""

    async def work() -> list[dict[str, Any]]:
        async with connection_of(context, database) as connection:
            return await registered_sinks(connection, settings_of(context).enabled_sinks)

    rows = run(work)
    if as_json:
        out.print_json(json.dumps(rows))
    else:
        out.print(render.sinks_table(rows))


@sinks_app.command("retire")
def sinks_retire(
    context: typer.Context,
    name: Annotated[str, typer.Argument(help="The sink to retire.")],
    database: DatabaseOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a sink no relay serves any more: its positions, leases and dead letters, so
    that the outbox is pruned past it again."""
    if name in settings_of(context).enabled_sinks:
        err.print(
            f"warning: sink {name!r} is still enabled in the configuration; a relay started "
            "with it registers it again",
            highlight=False,
        )
    if not yes and not typer.confirm(
        f"Retire sink {name!r}: delete its positions and dead letters?", default=False
    ):
        err.print("not retired")
        raise typer.Exit(1)

    async def work() -> tables.RetiredSink:
        async with connection_of(context, database) as connection:
            return await tables.retire_sink(connection, name)

    retired = run(work)
    out.print(
        f"retired sink {retired.sink}: removed {retired.positions} positions and "
        f"{retired.dead_letters} dead letters",
        highlight=False,
    )
