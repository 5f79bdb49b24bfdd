"""``fanout events``: an order's history."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID

import typer

from gateway.cli import render
from gateway.cli.app import app, connection_of, out, run
from gateway.errors import ValidationError
from gateway.history.store import OrderEvent, read_stream


@app.command("events")
def events_command(
    context: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """An order's events in version order: its whole history."""

    async def work() -> list[OrderEvent]:
        try:
            target = UUID(order_id)
        except ValueError:
            raise ValidationError.single("order_id", f"{order_id!r} is not a valid UUID") from None
        async with connection_of(context) as connection:
            return await read_stream(connection, target)

    events = run(work)
    if as_json:
        out.print_json(json.dumps([event.model_dump(mode="json") for event in events]))
    else:
        for line in render.events_lines(events):
            out.print(line, markup=False, highlight=False)
