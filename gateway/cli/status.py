"""``fanout status``: what each sink has delivered, its backlog and its retries."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli import render
from gateway.cli.app import (
    app,
    err,
    out,
    run,
    settings_of,
)
from gateway.operations.health import sink_status_rows
from gateway.operations.sinks import unserved_warnings
from gateway.postgres.database import connect
from gateway.postgres.topology import Topology


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
    for database in topology.databases:
        for warning in unserved_warnings(per_database[database.name], settings.enabled_sinks):
            err.print(f"warning: {topology.name_of(database)}{warning}", highlight=False)
    if as_json:
        document = per_database if sharded else next(iter(per_database.values()))
        out.print_json(json.dumps(document))
        return
    for name, rows in per_database.items():
        table = render.status_table(rows)
        if sharded:
            table.title = name
        out.print(table)
