"""The ``fanout`` command line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gateway.config import Settings, load_settings
from gateway.database import connect, ensure_database
from gateway.demo import place_demo_order
from gateway.errors import ConfigError, GatewayError
from gateway.gateway import Gateway
from gateway.migrations import MigrationRunner, MigrationStatus

T = TypeVar("T")

app = typer.Typer(
    help="Fan-out gateway: orders in PostgreSQL, their events relayed to every read-side store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
migrate_app = typer.Typer(
    help="Apply, inspect or roll back the database schema. With no subcommand: apply pending.",
    invoke_without_command=True,
)
app.add_typer(migrate_app, name="migrate")

out = Console()
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _options(
    context: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML configuration file (default: $FANOUT_CONFIG or config/gateway.yaml).",
        ),
    ] = None,
) -> None:
    context.obj = config


def _settings(context: typer.Context) -> Settings:
    path: Path | None = context.find_root().obj
    return load_settings(path)


def _run(work: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except ConfigError as error:
        err.print(f"[red]configuration error:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except GatewayError as error:
        err.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(1) from None


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
        settings = _settings(context)
        if create_database and await ensure_database(settings.postgres):
            out.print("created the database")
        connection = await connect(settings.postgres)
        try:
            applied = await MigrationRunner(connection).apply()
        finally:
            await connection.close()
        if not applied:
            out.print("schema is up to date; nothing to apply")
        for migration in applied:
            out.print(f"applied {migration.label}")

    _run(work)


@migrate_app.command("status")
def migrate_status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each migration: applied, pending, changed since applied, or unknown."""

    async def work() -> list[MigrationStatus]:
        connection = await connect(_settings(context).postgres)
        try:
            return await MigrationRunner(connection).status()
        finally:
            await connection.close()

    statuses = _run(work)
    if as_json:
        rows = [
            {
                "version": s.version,
                "name": s.name,
                "state": s.state.value,
                "applied_at": s.applied_at.isoformat() if s.applied_at else None,
                "reversible": s.reversible,
            }
            for s in statuses
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table("version", "name", "state", "applied at", "down script")
    for s in statuses:
        table.add_row(
            f"{s.version:04d}",
            s.name,
            s.state.value,
            s.applied_at.isoformat(timespec="seconds") if s.applied_at else "",
            "yes" if s.reversible else "no",
        )
    out.print(table)


@migrate_app.command("down")
def migrate_down(
    context: typer.Context,
    count: Annotated[int, typer.Argument(help="How many of the newest migrations to undo.", min=1)],
) -> None:
    """Roll back the newest COUNT applied migrations, newest first."""

    async def work() -> None:
        connection = await connect(_settings(context).postgres)
        try:
            undone = await MigrationRunner(connection).rollback(count)
        finally:
            await connection.close()
        for migration in undone:
            out.print(f"rolled back {migration.label}")

    _run(work)


@app.command("config")
def show_config(context: typer.Context) -> None:
    """Print the effective configuration (file plus environment), passwords redacted."""

    async def work() -> Settings:
        return _settings(context)

    settings = _run(work)
    # str() of a SecretUrl is the URL with its password redacted.
    out.print_json(json.dumps(settings.model_dump(), default=str))


@app.command("demo")
def demo(context: typer.Context) -> None:
    """Place a demo order (seeding a demo customer and product on first use)."""

    async def work() -> None:
        async with await Gateway.connect(_settings(context)) as gateway:
            order = await place_demo_order(gateway)
        out.print(f"placed order {order.order_number} ({order.id})")
        out.print_json(order.model_dump_json())

    _run(work)


def main() -> None:
    """Entry point of the ``fanout`` console script."""
    app(prog_name="fanout")


if __name__ == "__main__":
    main()
