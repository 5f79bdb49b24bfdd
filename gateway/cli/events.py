"""``fanout events``: an order's history."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli import render
from gateway.cli.app import app, out, run, settings_of
from gateway.facade.gateway import Gateway
from gateway.history.store import OrderEvent


@app.command("events")
def events_command(
    context: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """An order's events in version order: its whole history."""

    async def work() -> list[OrderEvent]:
        async with await Gateway.connect(settings_of(context)) as gateway:
            return await gateway.order_events(order_id)

    events = run(work)
    if as_json:
        out.print_json(json.dumps([event.model_dump(mode="json") for event in events]))
    else:
        for line in render.events_lines(events):
            out.print(line, markup=False, highlight=False)
