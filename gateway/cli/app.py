"""The ``fanout`` command's root: its options, sub-commands, and what every command shares.

Commands only parse arguments and print; the work is done by functions of the gateway's
packages, usable and tested without the CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.markup import escape

from gateway.api.server import configure_logging as configure_logging
from gateway.cli.console import stdout_console
from gateway.configuration.secrets import redact_url
from gateway.configuration.settings import Settings, load_settings
from gateway.errors import ConfigError, GatewayError
from gateway.postgres.database import connect
from gateway.postgres.topology import databases
from gateway.version import version

T = TypeVar("T")

PARTIAL_EXIT = 3
"""The exit status of a command that answered for only some shards (one did not answer)."""

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
dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
sinks_app = typer.Typer(help="List the sinks the outbox tracks; retire removed ones.")
app.add_typer(sinks_app, name="sinks", no_args_is_help=True)

out = stdout_console()
err = Console(stderr=True, soft_wrap=True)


def print_version(wanted: bool) -> None:
    """``--version``: print the installed version and exit."""
    if wanted:
        out.print(f"fanout {version()}", highlight=False)
        raise typer.Exit()


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
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    context.obj = config


def config_path(context: typer.Context) -> Path | None:
    """The ``--config`` given, if any."""
    path: Path | None = context.find_root().obj
    return path


def settings_of(context: typer.Context) -> Settings:
    """The settings of the ``--config`` given (or the default file) and the environment."""
    return load_settings(config_path(context))


DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="Sharded mode: the catalog's outbox ('catalog', the default) or a shard's (its name).",
    ),
]


@asynccontextmanager
async def connection_of(
    context: typer.Context, database: str | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the configured PostgreSQL (in sharded mode, to ``database``: the
    catalog by default, or a shard), closed on the way out."""
    known = databases(settings_of(context).postgres)
    chosen = known[0] if database is None else next((d for d in known if d.name == database), None)
    if chosen is None:
        names = ", ".join(d.name for d in known)
        raise GatewayError(f"no database named {database!r} (the databases: {names})")
    connection = await connect(chosen.postgres)
    try:
        yield connection
    finally:
        await connection.close()


def run(
    work: Callable[[], Awaitable[T]],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run ``work`` (on the loop ``loop_factory`` makes, by default asyncio's); a configuration
    error exits 2, any other gateway error 1, with a message."""
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(work())  # type: ignore[arg-type]
    except ConfigError as error:
        err.print(
            f"[red]configuration error:[/red] {escape(redact_url(str(error)))}",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(2) from None
    except GatewayError as error:
        err.print(
            f"[red]error:[/red] {escape(redact_url(str(error)))}", markup=True, highlight=False
        )
        raise typer.Exit(1) from None


def iso_time(text: str, option: str, *, naive_is_utc: bool = False) -> datetime:
    """``text`` as an ISO 8601 time with its offset (or, with ``naive_is_utc``, a date or time
    without one, taken as UTC); else exit 2 naming ``option``."""
    try:
        value: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is not None and value.tzinfo is None and naive_is_utc:
        value = value.replace(tzinfo=UTC)
    if value is None or value.tzinfo is None:
        err.print(
            f"error: {option}: {text!r} is not an ISO 8601 time with its offset "
            "(e.g. 2026-11-30T10:00:00Z)",
            highlight=False,
        )
        raise typer.Exit(2)
    return value


def main() -> None:
    """Entry point of the ``fanout`` console script."""
    app(prog_name="fanout")
