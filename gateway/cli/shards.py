"""``fanout shards status|plan|reconcile|move|moves``: sharded mode."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID

import typer

from gateway.cli import render
from gateway.cli.app import PARTIAL_EXIT, app, config_path, err, out, run, settings_of
from gateway.configuration.settings import default_config_path
from gateway.errors import ConfigError
from gateway.facade.gateway import Gateway
from gateway.postgres.topology import Topology
from gateway.sharding import move_records
from gateway.sharding.move_records import ShardMove
from gateway.sharding.move_rules import MoveState
from gateway.sharding.mover import DEFAULT_PAUSE_TIMEOUT, MoveResult
from gateway.sharding.placement import Shard
from gateway.sharding.plan import Plan, directory_entries, plan_moves
from gateway.sharding.reconcile import Reconciliation
from gateway.sharding.status import ShardsStatus, shards_status

shards_app = typer.Typer(
    help="Sharded mode: the shards' load, where placement would move customers, and moves."
)
app.add_typer(shards_app, name="shards", no_args_is_help=True)


async def _sharded(context: typer.Context) -> Gateway:
    settings = settings_of(context)
    if not Topology.of(settings.postgres).sharded:
        source = config_path(context) or default_config_path()
        raise ConfigError("postgres.shards", "no shards are configured", source)
    return await Gateway.connect(settings)


@shards_app.command("status")
def status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per shard: customers, orders and the largest outbox backlog; and the skew."""

    async def work() -> ShardsStatus:
        async with await _sharded(context) as gateway:
            timeout = gateway.settings.postgres.shard_timeout_seconds
            return await shards_status(gateway.pool, gateway.sharding.shards, timeout)

    result = run(work)
    if as_json:
        out.print_json(json.dumps(result.as_json()))
    else:
        out.print(render.shards_table(result))


@shards_app.command("plan")
def plan(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """How many existing customers the configured shards' placement would put on another shard
    than the directory says (after adding, removing or reweighting shards). Moves nothing."""

    async def work() -> Plan:
        async with await _sharded(context) as gateway:
            shards = [
                Shard(name, shard.weight)
                for name, shard in gateway.settings.postgres.shards.items()
            ]
            return plan_moves(await directory_entries(gateway.pool), shards)

    result = run(work)
    if as_json:
        moves = [{"from": a, "to": b, "customers": n} for (a, b), n in result.moves.items()]
        out.print_json(
            json.dumps({"customers": result.customers, "moving": result.moving, "moves": moves})
        )
    else:
        out.print(render.plan_table(result))


@shards_app.command("reconcile")
def reconcile(
    context: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what is broken; repair nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Check every live order against its reservation in the catalog and every committed
    reservation against its order, and repair what disagrees: units taken again for a live
    order (or a pending order cancelled when the stock no longer has them), units returned for
    a cancelled or missing order. Exits 1 when a break is left (with --dry-run, any break),
    3 when a shard did not answer."""

    async def work() -> Reconciliation:
        async with await _sharded(context) as gateway:
            return await gateway.sharding.reconcile(repair=not dry_run)

    result = run(work)
    if as_json:
        out.print_json(json.dumps(result.as_json()))
    else:
        out.print(render.reconciliation_table(result))
    for name, reason in result.missing.items():
        err.print(f"partial result: shard {name} did not answer ({reason})", highlight=False)
    if result.unrepaired:
        raise typer.Exit(1)
    if result.missing:
        raise typer.Exit(PARTIAL_EXIT)


@shards_app.command("move")
def move(
    context: typer.Context,
    customer: Annotated[
        str | None, typer.Argument(help="The customer's id (with --resume: optional).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="The shard to move it to.")] = None,
    pause_timeout: Annotated[
        float,
        typer.Option(
            "--pause-timeout",
            min=0.1,
            help="Seconds the customer may be paused (its events reaching every sink) before "
            "the move gives up and rolls back.",
        ),
    ] = DEFAULT_PAUSE_TIMEOUT,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish interrupted moves (the customer's, or all): forward when the source "
            "committed the move, else back.",
        ),
    ] = False,
) -> None:
    """Move a customer, its addresses, orders, payments and history to another shard, online:
    only this customer's writes wait, for the pause. Order ids minted before stay valid.
    Exits 1 when the move rolled back (the reason is printed)."""
    customer_id = _customer_id(customer) if customer is not None else None
    if not resume and (customer_id is None or to is None):
        err.print("a move needs CUSTOMER and --to SHARD (or --resume)", highlight=False)
        raise typer.Exit(2)

    async def work() -> list[MoveResult]:
        async with await _sharded(context) as gateway:
            mover = gateway.sharding.mover()
            if resume:
                pending = await move_records.unfinished(gateway.pool)
                chosen = [m for m in pending if customer_id in (None, m.customer_id)]
                return [MoveResult(await mover.resume(m)) for m in chosen]
            assert customer_id is not None and to is not None
            return [await mover.move(customer_id, to, pause_timeout=pause_timeout)]

    results = run(work)
    for result in results:
        moved = result.move
        line = f"move {moved.id}: customer {moved.customer_id} {moved.source} -> {moved.target}"
        line += f": {moved.state.value}"
        if result.pause_seconds is not None:
            line += f", {result.orders} order(s), paused {result.pause_seconds * 1000:.0f} ms"
        out.print(line, highlight=False)
        if moved.last_error and moved.state is MoveState.ROLLED_BACK:
            err.print(f"rolled back: {moved.last_error}", highlight=False)
    if resume and not results:
        out.print("no unfinished move", highlight=False)
    if not resume and results[0].move.state is not MoveState.DONE:
        raise typer.Exit(1)


@shards_app.command("moves")
def moves(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Customer moves: the unfinished ones and the latest finished, with their state."""

    async def work() -> list[ShardMove]:
        async with await _sharded(context) as gateway:
            return await move_records.listed(gateway.pool)

    listed = run(work)
    if as_json:
        out.print_json(json.dumps([m.as_json() for m in listed]))
    else:
        out.print(render.moves_table(listed))


def _customer_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        err.print(f"{value!r} is not a customer id (a UUID)", highlight=False)
        raise typer.Exit(2) from None
