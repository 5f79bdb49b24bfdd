"""``fanout doctor``: the health of PostgreSQL, its replicas and shards, and every sink."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli.app import app, out, run, settings_of
from gateway.cli.doctor_tables import render as render_doctor_report
from gateway.operations.doctor import Report, diagnose_configured, healthy


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
        return await diagnose_configured(settings_of(context), statements_limit=statements)

    report = run(work)
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        render_doctor_report(report, out)
    if not healthy(report):
        raise typer.Exit(1)
