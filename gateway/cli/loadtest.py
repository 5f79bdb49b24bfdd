"""``fanout loadtest``: drive orders and measure the fan-out."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from gateway.cli.app import app, config_path, err, out, run, settings_of
from gateway.configuration.settings import default_config_path
from gateway.errors import ConfigError
from gateway.postgres.topology import Topology

if TYPE_CHECKING:
    from gateway.loadtest.model import LoadReport

loadtest_app = typer.Typer(invoke_without_command=True)
app.add_typer(loadtest_app, name="loadtest")


@loadtest_app.callback()
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
    processes: Annotated[
        int | None,
        typer.Option(help="Driver processes sharing the load (default: half the cores, ≥ 1)."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(help="The run's id; give one to generators run in parallel, then merge."),
    ] = None,
    part: Annotated[
        int | None,
        typer.Option(help="This generator's number among those sharing the --run-id (1, 2, …)."),
    ] = None,
    payments: Annotated[
        str | None,
        typer.Option(
            help="Drive the payment saga: shares of orders paid, failed and left to time out, "
            "as paid=0.7,failed=0.2,unpaid=0.1."
        ),
    ] = None,
) -> None:
    """Drive orders at a rate or concurrency; report write latency, fan-out lag and drift.

    Exit code 1 when the relay did not drain or a store drifted from PostgreSQL.
    `fanout loadtest merge A.json B.json …` combines the reports of generators run in
    parallel with one --run-id (and each its own --part).
    """
    if context.invoked_subcommand is not None:
        return
    try:
        from gateway.loadtest import LoadPlan, RunControl, run_loadtest
        from gateway.loadtest.chart import draw  # noqa: F401  (the extra is installed)
        from gateway.loadtest.event_loop import fast_loop_factory
        from gateway.loadtest.progress import ProgressDisplay
    except ImportError as error:
        err.print(f"error: {error.name} is missing; install fanout-gateway[loadtest]")
        raise typer.Exit(2) from None
    if via not in {"embedded", "http"}:
        err.print("error: --via: must be embedded or http")
        raise typer.Exit(2)
    if compare not in {None, "dual-write"}:
        err.print("error: --compare: the only comparison is dual-write")
        raise typer.Exit(2)
    paid = failed = unpaid = 0.0
    if payments is not None:
        from gateway.errors import ValidationError
        from gateway.loadtest.plan import parse_payment_mix

        try:
            paid, failed, unpaid = parse_payment_mix(payments)
        except ValidationError as error:
            err.print(f"error: {error}", markup=False, highlight=False)
            raise typer.Exit(2) from None
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
        processes=processes,
        run_id=run_id,
        part=part,
        paid_share=paid,
        failed_share=failed,
        unpaid_share=unpaid,
    )

    async def work() -> LoadReport:
        settings = settings_of(context)
        if Topology.of(settings.postgres).sharded:
            raise ConfigError(
                "postgres.shards",
                "fanout loadtest measures one database; run it without shards "
                "(bench/sharding.py measures sharded mode)",
                config_path(context) or default_config_path(),
            )
        control = RunControl()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, control.interrupt)
        with ProgressDisplay(out, plan) as display:
            return await run_loadtest(
                settings,
                plan,
                config_path=config_path(context),
                control=control,
                progress=display,
            )

    _finish(run(work, loop_factory=fast_loop_factory()), plan.out, plan.chart)


@loadtest_app.command("merge")
def merge(
    reports: Annotated[list[Path], typer.Argument(help="The reports of the parts (JSON).")],
    report_path: Annotated[
        Path | None, typer.Option("--out", help="Write the merged JSON report here.")
    ] = None,
    chart_path: Annotated[
        Path | None, typer.Option("--chart", help="Draw the merged PNG chart here.")
    ] = None,
) -> None:
    """Merge the reports of one run's parts: counts added, percentiles exact from the parts'
    histograms. Exit code 1 when any part drifted or did not drain."""
    import json

    from gateway.loadtest.merge import MergeError, merge_reports

    loaded = []
    for path in reports:
        try:
            loaded.append(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            err.print(f"error: {path}: {error}")
            raise typer.Exit(2) from None
    try:
        merged = merge_reports(loaded, [str(path) for path in reports])
    except (MergeError, KeyError, TypeError) as error:
        message = (
            str(error) if isinstance(error, MergeError) else f"not a load test report: {error}"
        )
        err.print(f"error: {message}")
        raise typer.Exit(2) from None
    _finish(merged, report_path, chart_path)


def _finish(report: LoadReport, report_path: Path | None, chart_path: Path | None) -> None:
    from gateway.loadtest.chart import draw
    from gateway.loadtest.report import render, write_json

    # Tables of this width stay legible in logs and files, where there is no terminal width.
    render(report, out if out.is_terminal else Console(width=max(out.width, 160)))
    if report_path is not None:
        write_json(report, report_path)
        out.print(f"report: {report_path}")
    if chart_path is not None:
        draw(report, chart_path)
        out.print(f"chart: {chart_path}")
    if report["result"] != "clean":
        raise typer.Exit(1)
