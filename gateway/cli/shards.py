"""``fanout shards status|plan|reconcile``: sharded mode."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli import render
from gateway.cli.app import PARTIAL_EXIT, app, config_path, err, out, run, settings_of
from gateway.configuration.settings import default_config_path
from gateway.errors import ConfigError
from gateway.facade.gateway import Gateway
from gateway.postgres.topology import Topology
from gateway.sharding.placement import Shard
from gateway.sharding.plan import Plan, directory_entries, plan_moves
from gateway.sharding.reconcile import Reconciliation
from gateway.sharding.status import ShardsStatus, shards_status

shards_app = typer.Typer(
    help="Sharded mode: the shards' load, and where placement would move customers."
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
