"""``fanout dlq``: inspect and replay dead letters."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer

from gateway.cli import render
from gateway.cli.app import (
    DatabaseOption,
    connection_of,
    dlq_app,
    err,
    out,
    run,
)
from gateway.relay import tables


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
