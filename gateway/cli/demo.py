"""``fanout demo``: place a demo order and walk it through its life."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli.app import app, out, run, settings_of
from gateway.facade.gateway import Gateway
from gateway.operations.demo import LIFE, place_demo_order, walk_demo_order
from gateway.write_path.models import Order


@app.command("demo")
def demo(
    context: typer.Context,
    orders: Annotated[int, typer.Option(help="How many orders to place.", min=1, max=1000)] = 1,
    walk: Annotated[
        bool,
        typer.Option(
            "--walk", help="Move the first order through confirmed, processing, shipped, delivered."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the orders as JSON.")] = False,
) -> None:
    """Place demo orders (seeding a demo customer and product on first use)."""

    async def work() -> list[Order]:
        async with await Gateway.connect(settings_of(context)) as gateway:
            placed = [await place_demo_order(gateway) for _ in range(orders)]
            if walk:
                placed[0] = await walk_demo_order(gateway, placed[0])
            return placed

    placed = run(work)
    if as_json:
        out.print_json(json.dumps([order.model_dump(mode="json") for order in placed]))
        return
    for order in placed:
        out.print(
            f"placed order {order.order_number} ({order.id}): {order.status}, v{order.version}",
            soft_wrap=True,
        )
    if walk:
        first = placed[0]
        out.print(
            f"walked order {first.order_number} ({first.id}) through {', '.join(LIFE)}",
            soft_wrap=True,
        )
