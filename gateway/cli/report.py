"""``fanout report``: orders and revenue over a period (every mode)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from gateway.cli import render
from gateway.cli.app import PARTIAL_EXIT, app, err, iso_time, out, run, settings_of
from gateway.facade.gateway import Gateway
from gateway.write_path.orders_report import GroupBy, OrdersReport


@app.command("report")
def report(
    context: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Start, ISO date or time (default: 30 days ago; UTC unless it says)."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="End, exclusive (default: now).")] = None,
    group_by: Annotated[GroupBy, typer.Option(help="What each row is.")] = GroupBy.STATUS,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Orders and revenue over a period, grouped, over every shard. Exits 3 when a shard did
    not answer: the result is partial, and says which shards are missing."""
    now = datetime.now(UTC)
    start = iso_time(since, "--since", naive_is_utc=True) if since else now - timedelta(days=30)
    end = iso_time(until, "--until", naive_is_utc=True) if until else now

    async def work() -> OrdersReport:
        async with await Gateway.connect(settings_of(context)) as gateway:
            return await gateway.orders_report(start, end, group_by)

    result = run(work)
    if as_json:
        out.print_json(json.dumps(result.as_json()))
    else:
        out.print(render.report_table(result))
    if result.partial:
        for name, reason in result.missing.items():
            err.print(f"partial result: shard {name} did not answer ({reason})", highlight=False)
        raise typer.Exit(PARTIAL_EXIT)
