"""``fanout status``, ``sinks`` and ``dlq``: what each sink has delivered, and its dead letters."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer

from gateway.cli import render
from gateway.cli.app import (
    DatabaseOption,
    app,
    connection_of,
    dlq_app,
    err,
    out,
    run,
    settings_of,
    sinks_app,
)
from gateway.operations.health import sink_status_rows
from gateway.operations.sinks import registered_sinks, unserved_warnings
from gateway.postgres.database import connect
from gateway.postgres.topology import Topology
from gateway.relay import tables


@app.command("status")
def status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per sink: backlog, oldest undelivered age, delivered, retrying, dead-lettered (in
    sharded mode, of each database's outbox: the catalog's and every shard's)."""
    settings = settings_of(context)
    topology = Topology.of(settings.postgres)

    async def work() -> dict[str, list[dict[str, object]]]:
        found: dict[str, list[dict[str, object]]] = {}
        for database in topology.databases:
            connection = await connect(database.postgres)
            try:
                found[database.name] = await sink_status_rows(connection)
            finally:
                await connection.close()
        return found

    per_database = run(work)
    sharded = topology.sharded
    for name, rows in per_database.items():
        for warning in unserved_warnings(rows, settings.enabled_sinks):
            err.print(f"warning: {f'{name}: ' if sharded else ''}{warning}", highlight=False)
    if as_json:
        document = per_database if sharded else next(iter(per_database.values()))
        out.print_json(json.dumps(document))
        return
    for name, rows in per_database.items():
        table = render.status_table(rows)
        if sharded:
            table.title = name
        out.print(table)


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


@dlq_app.command("list")
def dlq_list(
    context: typer.Context,
    sink: Annotated[str | None, typer.Option(help="Only this sink's dead letters.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1)] = 100,
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List dead letters not yet replayed, oldest first, with the reason and last error."""

    async def work() -> list[dict[str, Any]]:
        async with connection_of(context, database) as connection:
            return await tables.list_dead_letters(connection, sink, limit)

    letters = run(work)
    if as_json:
        out.print_json(json.dumps(letters, default=str))
    else:
        out.print(render.dead_letters_table(letters))


@dlq_app.command("replay")
def dlq_replay(
    context: typer.Context,
    sink: Annotated[str, typer.Option(help="The sink whose dead letters to replay.")],
    event: Annotated[uuid.UUID | None, typer.Option(help="Replay only this event id.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Ask the relays to deliver dead letters again (after the cause was fixed)."""
    if (event is None) == (not replay_all):
        err.print("error: give exactly one of --event ID and --all")
        raise typer.Exit(2)

    async def work() -> int:
        async with connection_of(context, database) as connection:
            return await tables.request_replay(connection, sink, event)

    count = run(work)
    if count == 0:
        err.print(f"error: no dead letter of sink {sink!r} matches")
        raise typer.Exit(1)
    out.print(f"requested replay of {count} dead letter{'s' if count != 1 else ''} of {sink}")
