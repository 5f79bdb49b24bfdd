"""The ``fanout`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, TypeVar

import asyncpg
import typer
import uvicorn
from prometheus_client import start_http_server
from rich.console import Console
from rich.table import Table

from adapters.readback import ReadBack
from adapters.registry import build_sink
from gateway.api import create_app
from gateway.configuration.settings import Settings, load_settings
from gateway.errors import ConfigError, GatewayError
from gateway.operations.demo import place_demo_order
from gateway.operations.doctor import Report, diagnose, healthy
from gateway.operations.doctor_tables import render as render_doctor_report
from gateway.operations.health import sink_status_rows
from gateway.operations.verify import Drift, verify
from gateway.postgres.database import connect, create_pool, ensure_database
from gateway.postgres.migrations import MigrationRunner, MigrationStatus
from gateway.relay import Relay, collector, tables
from gateway.relay.tables import SinkTotals
from gateway.write_path.gateway import Gateway

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
dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
sinks_app = typer.Typer(help="List the sinks the outbox tracks; retire removed ones.")
app.add_typer(sinks_app, name="sinks", no_args_is_help=True)

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


@asynccontextmanager
async def _connection(context: typer.Context) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(_settings(context).postgres)
    try:
        yield connection
    finally:
        await connection.close()


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
        if create_database and await ensure_database(_settings(context).postgres):
            out.print("created the database")
        async with _connection(context) as connection:
            applied = await MigrationRunner(connection).apply()
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
        async with _connection(context) as connection:
            return await MigrationRunner(connection).status()

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
        async with _connection(context) as connection:
            undone = await MigrationRunner(connection).rollback(count)
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


@app.command("relay")
def relay(
    context: typer.Context,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Drain every sink, then exit.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port.", min=1, max=65535),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address for the metrics server.")
    ] = "127.0.0.1",
) -> None:
    """Relay outbox events to every enabled sink until SIGTERM or SIGINT."""

    async def work() -> None:
        settings = _settings(context)
        logging.basicConfig(
            level=settings.logging.level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        if metrics_port is not None:
            start_http_server(metrics_port, addr=metrics_host)
        async with await Relay.connect(settings, collect_stats=metrics_port is not None) as r:
            collector.tune_for_relay()
            loop = asyncio.get_running_loop()
            for signal_number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signal_number, r.stop)
            await r.run(until_idle=until_idle)

    _run(work)


@app.command("serve")
def serve(
    context: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default: api.host).")] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Listen port (default: api.port; 0: any free port).", min=0, max=65535),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the HTTP API until SIGTERM or SIGINT (then finish open requests and exit 0)."""

    async def work() -> Settings:
        return _settings(context)

    settings = _run(work)
    logging.basicConfig(
        level=settings.logging.level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=host or settings.api.host,
            port=settings.api.port if port is None else port,
            log_config=None,
            access_log=access_log,
            server_header=False,
            timeout_keep_alive=settings.api.keep_alive_seconds,
            timeout_graceful_shutdown=int(settings.relay.shutdown_timeout_seconds),
        )
    )
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again for the
    # previous handler; this one turns that into a normal exit.
    signal.signal(signal.SIGTERM, _exit_normally)
    try:
        server.run()
    except GatewayError as error:
        err.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    if not server.started:
        raise typer.Exit(1)


def _exit_normally(signal_number: int, frame: object) -> None:
    raise SystemExit(0)


@app.command("status")
def status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per sink: backlog, oldest undelivered age, delivered, retrying, dead-lettered."""

    async def work() -> list[dict[str, object]]:
        async with _connection(context) as connection:
            return await sink_status_rows(connection)

    rows = _run(work)
    configured = _settings(context).enabled_sinks
    for row in rows:
        unserved_for = row["unserved_seconds"]
        if isinstance(unserved_for, float) and row["sink"] not in configured:
            warning = tables.unserved_warning(str(row["sink"]), unserved_for)
            err.print(f"warning: {warning}", highlight=False)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(
        "sink", "backlog", "oldest", "delivered", "retrying", "dead", "relays", "last error"
    )
    for row in rows:
        oldest = row["oldest_undelivered_seconds"]
        unserved_for = row["unserved_seconds"]
        relays = f"none for {unserved_for:.0f}s" if isinstance(unserved_for, float) else None
        table.add_row(
            str(row["sink"]),
            str(row["backlog"]),
            f"{oldest:.1f}s" if isinstance(oldest, float) else "",
            str(row["delivered"]),
            str(row["retrying"]),
            str(row["dead_lettered"]),
            relays or str(row["relays"]),
            str(row["last_error"] or ""),
        )
    out.print(table)


@sinks_app.command("list")
def sinks_list(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every sink with positions in the outbox: configured here or not, served or not."""

    async def work() -> list[SinkTotals]:
        async with _connection(context) as connection:
            return await tables.sink_totals(connection)

    registered = _run(work)
    configured = _settings(context).enabled_sinks
    rows = [asdict(sink) | {"configured": sink.sink in configured} for sink in registered]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("sink", "configured", "served", "unserved for", "delivered", "dead")
    for row in rows:
        table.add_row(
            str(row["sink"]),
            "yes" if row["configured"] else "no",
            "yes" if row["served"] else "no",
            "" if row["served"] else f"{row['unserved_seconds']:.0f}s",
            str(row["delivered"]),
            str(row["dead_lettered"]),
        )
    out.print(table)


@sinks_app.command("retire")
def sinks_retire(
    context: typer.Context,
    name: Annotated[str, typer.Argument(help="The sink to retire.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a sink no relay serves any more: its positions, leases and dead letters, so
    that the outbox is pruned past it again."""
    if name in _settings(context).enabled_sinks:
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
        async with _connection(context) as connection:
            return await tables.retire_sink(connection, name)

    retired = _run(work)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List dead letters not yet replayed, oldest first, with the reason and last error."""

    async def work() -> list[dict[str, object]]:
        async with _connection(context) as connection:
            return await tables.list_dead_letters(connection, sink, limit)

    letters = _run(work)
    if as_json:
        out.print_json(json.dumps(letters, default=str))
        return
    table = Table("sink", "event", "type", "aggregate", "version", "reason", "attempts", "error")
    for letter in letters:
        table.add_row(
            str(letter["sink"]),
            str(letter["event_id"]),
            str(letter["event_type"]),
            str(letter["aggregate_id"]),
            str(letter["version"]),
            str(letter["reason"]),
            str(letter["attempts"]),
            str(letter["last_error"]),
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(
    context: typer.Context,
    sink: Annotated[str, typer.Option(help="The sink whose dead letters to replay.")],
    event: Annotated[uuid.UUID | None, typer.Option(help="Replay only this event id.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Ask the relays to deliver dead letters again (after the cause was fixed)."""
    if (event is None) == (not replay_all):
        err.print("error: give exactly one of --event ID and --all")
        raise typer.Exit(2)

    async def work() -> int:
        async with _connection(context) as connection:
            return await tables.request_replay(connection, sink, event)

    count = _run(work)
    if count == 0:
        err.print(f"error: no dead letter of sink {sink!r} matches")
        raise typer.Exit(1)
    out.print(f"requested replay of {count} dead letter{'s' if count != 1 else ''} of {sink}")


@app.command("doctor")
def doctor(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    statements: Annotated[
        int, typer.Option(help="How many of the slowest statements to show.", min=1)
    ] = 10,
) -> None:
    """PostgreSQL health, outbox backlog and every sink's health; exit 1 if anything is down."""

    async def work() -> Report:
        settings = _settings(context)
        sinks = {
            name: build_sink(name, sink) for name, sink in settings.sinks.items() if sink.enabled
        }
        try:
            return await diagnose(
                settings.postgres,
                sinks,
                timeout_seconds=settings.api.health_timeout_seconds,
                statements_limit=statements,
            )
        finally:
            for sink in sinks.values():
                await sink.close()

    report = _run(work)
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        render_doctor_report(report, out)
    if not healthy(report):
        raise typer.Exit(1)


@app.command("loadtest")
def loadtest(
    context: typer.Context,
    via: Annotated[
        str, typer.Option(help="embedded (Gateway in this process) or http (the API at --url).")
    ] = "embedded",
    url: Annotated[str | None, typer.Option(help="The API's base URL, with --via http.")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Open loop: operations per second offered (default 100).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Closed loop: this many workers, each one call at a time.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to drive load (default 30 without --orders).")
    ] = None,
    orders: Annotated[int | None, typer.Option(help="Stop after placing this many orders.")] = None,
    transitions: Annotated[
        float, typer.Option(help="Share of operations that move an order to its next status.")
    ] = 0.3,
    customers: Annotated[int, typer.Option(help="Customers to seed for the run.")] = 50,
    products: Annotated[int, typer.Option(help="Products to seed for the run.")] = 20,
    sample_every: Annotated[
        int, typer.Option(help="Time the visibility of every Nth write in each store.")
    ] = 10,
    relays: Annotated[
        int, typer.Option(help="Relay processes to start for the run (0: use running relays).")
    ] = 0,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the relay to deliver everything.")
    ] = 300.0,
    compare: Annotated[
        str | None, typer.Option(help="dual-write: run the naive alternative too, side by side.")
    ] = None,
    fault: Annotated[
        str | None, typer.Option(help="Stop this sink's store server during each phase.")
    ] = None,
    fault_at: Annotated[float, typer.Option(help="When to stop it, as a share of the run.")] = 1
    / 3,
    fault_for: Annotated[float, typer.Option(help="How long, as a share of the run.")] = 1 / 3,
    fault_stop_command: Annotated[
        str | None, typer.Option(help="Command that stops the store (default: services.sh).")
    ] = None,
    fault_start_command: Annotated[
        str | None, typer.Option(help="Command that starts it and waits until it answers.")
    ] = None,
    max_in_flight: Annotated[
        int, typer.Option(help="Open loop: requests outstanding at most (more count as errors).")
    ] = 2000,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow targets that are not on this machine.")
    ] = False,
    no_limits: Annotated[
        bool, typer.Option(help="Lift the caps on duration, rate, concurrency and orders.")
    ] = False,
    report_path: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON report here.")
    ] = None,
    chart_path: Annotated[
        Path | None, typer.Option("--chart", help="Draw the PNG chart here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the order mix.")] = 1,
) -> None:
    """Drive orders at a rate or concurrency; report write latency, fan-out lag and drift.

    Exit code 1 when the relay did not drain or a store drifted from PostgreSQL.
    """
    try:
        from gateway.loadtest import LoadPlan, RunControl, run_loadtest
        from gateway.loadtest.chart import draw
        from gateway.loadtest.progress import ProgressDisplay
        from gateway.loadtest.report import render, write_json
    except ImportError as error:
        err.print(f"error: {error.name} is missing; install fanout-gateway[loadtest]")
        raise typer.Exit(2) from None
    if via not in {"embedded", "http"}:
        err.print("error: --via: must be embedded or http")
        raise typer.Exit(2)
    if compare not in {None, "dual-write"}:
        err.print("error: --compare: the only comparison is dual-write")
        raise typer.Exit(2)
    plan = LoadPlan(
        via=via,  # type: ignore[arg-type]
        url=url,
        rate=rate,
        concurrency=concurrency,
        duration_seconds=duration,
        orders=orders,
        transition_ratio=transitions,
        customers=customers,
        products=products,
        sample_every=sample_every,
        relays=relays,
        drain_timeout_seconds=drain_timeout,
        compare=compare,  # type: ignore[arg-type]
        fault=fault,
        fault_at=fault_at,
        fault_for=fault_for,
        fault_stop_command=fault_stop_command,
        fault_start_command=fault_start_command,
        max_in_flight=max_in_flight,
        allow_remote=allow_remote,
        no_limits=no_limits,
        out=report_path,
        chart=chart_path,
        seed=seed,
    )

    async def work() -> dict[str, object]:
        settings = _settings(context)
        control = RunControl()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, control.interrupt)
        with ProgressDisplay(out, plan) as display:
            return await run_loadtest(
                settings,
                plan,
                config_path=context.find_root().obj,
                control=control,
                progress=display,
            )

    report = _run(work)
    # Tables of this width stay legible in logs and files, where there is no terminal width.
    render(report, out if out.is_terminal else Console(width=max(out.width, 160)))
    if plan.out is not None:
        write_json(report, plan.out)
        out.print(f"report: {plan.out}")
    if plan.chart is not None:
        draw(report, plan.chart)
        out.print(f"chart: {plan.chart}")
    if report["result"] != "clean":
        raise typer.Exit(1)


@app.command("verify")
def verify_command(
    context: typer.Context,
    sink: Annotated[
        list[str] | None, typer.Option("--sink", help="Only this sink (repeatable).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Orders compared per request.", min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Compare PostgreSQL's orders with each sink; exit 1 on any drift."""

    async def work() -> list[Drift]:
        settings = _settings(context)
        chosen = sink or [name for name, s in settings.sinks.items() if s.enabled]
        unknown = [name for name in chosen if name not in settings.sinks]
        if unknown:
            raise GatewayError(f"no sink named {unknown[0]!r} in the configuration")
        sinks = {name: build_sink(name, settings.sinks[name]) for name in chosen}
        results: list[Drift] = []
        pool = await create_pool(settings.postgres)
        try:
            for name, candidate in sinks.items():
                if not isinstance(candidate, ReadBack):
                    raise GatewayError(f"sink {name!r} cannot be read back for verification")
                results.append(await verify(pool, name, candidate, batch_size))
        finally:
            await pool.close()
            for candidate in sinks.values():
                await candidate.close()
        return results

    results = _run(work)
    if as_json:
        out.print_json(json.dumps([drift.as_dict() for drift in results]))
    else:
        table = Table("sink", "matched", "missing", "stale", "mismatched", "extra", "result")
        for drift in results:
            table.add_row(
                drift.sink,
                str(drift.matched),
                str(drift.missing),
                str(drift.stale),
                str(drift.mismatched),
                str(drift.extra),
                "ok" if drift.clean else "DRIFT",
            )
        out.print(table)
    if not all(drift.clean for drift in results):
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``fanout`` console script."""
    app(prog_name="fanout")


if __name__ == "__main__":
    main()
