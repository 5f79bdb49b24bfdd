"""``fanout migrate``: apply, inspect and roll back the schema."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli import render
from gateway.cli.app import connection_of, migrate_app, out, run, settings_of
from gateway.postgres.database import ensure_database
from gateway.postgres.migrations import MigrationRunner, MigrationStatus


@migrate_app.callback()
def migrate(
    context: typer.Context,
    create_database: Annotated[
        bool, typer.Option(help="Create the configured database first if it does not exist.")
    ] = False,
) -> None:
    """Apply every pending migration (a no-op when the schema is up to date)."""
    if context.invoked_subcommand is not None:
        return

    async def work() -> None:
        if create_database and await ensure_database(settings_of(context).postgres):
            out.print("created the database")
        async with connection_of(context) as connection:
            applied = await MigrationRunner(connection).apply()
        if not applied:
            out.print("schema is up to date; nothing to apply")
        for migration in applied:
            out.print(f"applied {migration.label}")

    run(work)


@migrate_app.command("status")
def migrate_status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each migration: applied, pending, changed since applied, or unknown."""

    async def work() -> list[MigrationStatus]:
        async with connection_of(context) as connection:
            return await MigrationRunner(connection).status()

    statuses = run(work)
    if as_json:
        out.print_json(json.dumps(render.migration_rows(statuses)))
    else:
        out.print(render.migrations_table(statuses))


@migrate_app.command("down")
def migrate_down(
    context: typer.Context,
    count: Annotated[int, typer.Argument(help="How many of the newest migrations to undo.", min=1)],
) -> None:
    """Roll back the newest COUNT applied migrations, newest first."""

    async def work() -> None:
        async with connection_of(context) as connection:
            undone = await MigrationRunner(connection).rollback(count)
        for migration in undone:
            out.print(f"rolled back {migration.label}")

    run(work)
