"""``fanout rewind``: have the relay deliver the outbox's kept events again."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli.app import (
    DatabaseOption,
    app,
    connection_of,
    err,
    iso_time,
    out,
    run,
    settings_of,
)
from gateway.operations.rewind import RewindPlan, plan_rewind, rewind
from gateway.telemetry.tracing import operation, traced


@app.command("rewind")
def rewind_command(
    context: typer.Context,
    sink: Annotated[str, typer.Option("--sink", help="The sink to deliver to again.")],
    to: Annotated[
        str, typer.Option("--to", help="Deliver again the events since this time (ISO 8601).")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say how many events that is.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Move a sink's positions back so that the relay delivers the events the outbox keeps
    since a time again; refused while a relay serves the sink."""
    since = iso_time(to, "--to") if to is not None else None
    assert since is not None

    async def planned() -> RewindPlan:
        async with connection_of(context, database) as connection:
            return await plan_rewind(connection, sink, since)

    async def rewound() -> RewindPlan:
        telemetry = settings_of(context).telemetry
        with traced(telemetry, "command"), operation(f"rewind {sink}"):
            async with connection_of(context, database) as connection:
                return await rewind(connection, sink, since)

    plan = run(planned)
    if dry_run or not plan.moves or not as_json:  # as JSON, one document: the outcome's
        _print_plan(plan, as_json, done=False)
    if dry_run or not plan.moves:
        return
    if not yes and not typer.confirm(
        f"Deliver {plan.events:,} events to {sink!r} again?", default=False
    ):
        err.print("not rewound")
        raise typer.Exit(1)
    _print_plan(run(rewound), as_json, done=True)


def _print_plan(plan: RewindPlan, as_json: bool, *, done: bool) -> None:
    if as_json:
        out.print_json(json.dumps({**plan.as_json(), "rewound": done}))
        return
    verb = "rewound" if done else "would rewind"
    out.print(
        f"{plan.sink}: {verb} {len(plan.moves)} partitions, {plan.events:,} events to deliver "
        f"again since {plan.to.isoformat()}",
        highlight=False,
    )
    if plan.oldest_kept is not None and plan.oldest_kept > plan.to:
        err.print(
            f"note: the outbox keeps events from {plan.oldest_kept.isoformat()} on; older ones "
            "cannot be delivered again (fanout backfill rebuilds a store from PostgreSQL)",
            highlight=False,
        )
