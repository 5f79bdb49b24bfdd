"""``fanout migrate``: apply, inspect and roll back the schema (of every database, in sharded
mode: the catalog and each shard, each with its own history)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from gateway.cli import render
from gateway.cli.app import migrate_app, out, run, settings_of
from gateway.postgres.database import connect, ensure_database
from gateway.postgres.migrations import (
    MigrationRunner,
    MigrationStatus,
    discover_migrations,
)
from gateway.postgres.topology import Database, Topology

T = TypeVar("T")


async def _each_database(
    context: typer.Context, work: Callable[[Database, MigrationRunner], Awaitable[T]]
) -> list[tuple[Database, T]]:
    """``work`` over a runner of each configured database's migrations, in turn."""
    results: list[tuple[Database, T]] = []
    for database in Topology.of(settings_of(context).postgres).databases:
        connection = await connect(database.postgres)
        try:
            runner = MigrationRunner(connection, discover_migrations(database.role))
            results.append((database, await work(database, runner)))
        finally:
            await connection.close()
    return results


@migrate_app.callback()
def migrate(
    context: typer.Context,
    create_database: Annotated[
        bool, typer.Option(help="Create the configured databases first if they do not exist.")
    ] = False,
) -> None:
    """Apply every pending migration (a no-op when the schema is up to date)."""
    if context.invoked_subcommand is not None:
        return

    topology = Topology.of(settings_of(context).postgres)

    async def work() -> None:
        if create_database:
            for database in topology.databases:
                if await ensure_database(database.postgres):
                    out.print(f"{topology.name_of(database)}created the database")

        async def apply(database: Database, runner: MigrationRunner) -> None:
            applied = await runner.apply()
            prefix = topology.name_of(database)
            if not applied:
                out.print(f"{prefix}schema is up to date; nothing to apply")
            for migration in applied:
                out.print(f"{prefix}applied {migration.label}")

        await _each_database(context, apply)

    run(work)


@migrate_app.command("status")
def migrate_status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each migration: applied, pending, changed since applied, or unknown."""

    async def status(_: Database, runner: MigrationRunner) -> list[MigrationStatus]:
        return await runner.status()

    results = run(lambda: _each_database(context, status))
    sharded = Topology.of(settings_of(context).postgres).sharded
    if as_json:
        if sharded:
            document: object = {db.name: render.migration_rows(rows) for db, rows in results}
        else:
            document = render.migration_rows(results[0][1])
        out.print_json(json.dumps(document))
        return
    for database, statuses in results:
        table = render.migrations_table(statuses)
        if sharded:
            table.title = f"{database.name} ({database.role.value})"
        out.print(table)


@migrate_app.command("down")
def migrate_down(
    context: typer.Context,
    count: Annotated[int, typer.Argument(help="How many of the newest migrations to undo.", min=1)],
) -> None:
    """Roll back the newest COUNT applied migrations, newest first (in every database)."""
    topology = Topology.of(settings_of(context).postgres)

    async def work() -> None:
        async def rollback(database: Database, runner: MigrationRunner) -> None:
            for migration in await runner.rollback(count):
                out.print(f"{topology.name_of(database)}rolled back {migration.label}")

        await _each_database(context, rollback)

    run(work)
