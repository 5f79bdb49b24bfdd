"""``fanout shards status|plan|reconcile|move|moves|rebalance|drain``: sharded mode."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated
from uuid import UUID

import typer

from gateway.cli import render
from gateway.cli.app import PARTIAL_EXIT, app, config_path, err, out, run, settings_of
from gateway.configuration.settings import default_config_path
from gateway.errors import ConfigError, GatewayError, MoveRefused
from gateway.facade.gateway import Gateway
from gateway.postgres.topology import Topology
from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding import move_records
from gateway.sharding.move_records import ShardMove
from gateway.sharding.move_rules import MoveState
from gateway.sharding.mover import DEFAULT_PAUSE_TIMEOUT, MoveResult, ShardMover
from gateway.sharding.placement import Shard
from gateway.sharding.plan import Plan, directory_entries, plan_moves
from gateway.sharding.rebalance import (
    PlannedMove,
    Progress,
    carry_out,
    drain_moves,
    rebalance_moves,
)
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
            return plan_moves(await directory_entries(gateway.pool), _placement(gateway))

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
            try:
                if resume:
                    pending = await move_records.unfinished(gateway.pool)
                    pending += await mover.cleanups_left()
                    chosen = [m for m in pending if customer_id in (None, m.customer_id)]
                    return [await _resumed(mover, m) for m in chosen]
                assert customer_id is not None and to is not None
                return [await mover.move(customer_id, to, pause_timeout=pause_timeout)]
            except DATABASE_ERRORS as error:
                raise MoveStopped(error) from None

    results = run(work)
    for result in results:
        moved = result.move
        line = f"move {moved.id}: customer {moved.customer_id} {moved.source} -> {moved.target}"
        line += f": {moved.state.value}"
        if result.pause_seconds is not None:
            line += f", {result.orders} order(s), paused {result.pause_seconds * 1000:.0f} ms"
        out.print(line, highlight=False)
        if moved.last_error and moved.state is MoveState.ROLLED_BACK:
            err.print(f"rolled back: {moved.last_error}", highlight=False, markup=False)
        elif moved.last_error and not moved.state.finished:
            err.print(f"not finished: {moved.last_error}", highlight=False, markup=False)
    if resume and not results:
        out.print("no unfinished move", highlight=False)
    if resume and any(not result.move.state.finished for result in results):
        raise typer.Exit(1)
    if not resume and results[0].move.state is not MoveState.DONE:
        raise typer.Exit(1)


async def _resumed(mover: ShardMover, move: ShardMove) -> MoveResult:
    """``move`` resumed; when it cannot be finished now, as it stands, with why."""
    try:
        return MoveResult(await mover.resume(move))
    except (MoveRefused, *DATABASE_ERRORS) as error:
        why = (
            f"{type(error).__name__}: {error}" if not isinstance(error, MoveRefused) else str(error)
        )
        return MoveResult(replace(move, last_error=why))


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


PauseTimeout = Annotated[
    float,
    typer.Option(
        "--pause-timeout",
        min=0.1,
        help="Seconds each customer may be paused before its move gives up and rolls back.",
    ),
]
Rate = Annotated[
    float | None,
    typer.Option("--rate", min=0.01, help="Customers a second at most (default: no limit)."),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="List the moves the run would make; move nothing.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class MoveStopped(GatewayError):
    """A database stopped answering while moves were made or resumed."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(
            f"the move stopped: {type(error).__name__}: {error}; fanout shards moves lists "
            "what is unfinished, and fanout shards move --resume finishes it"
        )


class MoveRolledBack(GatewayError):
    """A move of a rebalance or a drain that gave up (its customer stays on its source)."""


@shards_app.command("rebalance")
def rebalance(
    context: typer.Context,
    max_moves: Annotated[
        int | None, typer.Option("--max-moves", min=1, help="Make at most this many moves.")
    ] = None,
    rate: Rate = None,
    pause_timeout: PauseTimeout = DEFAULT_PAUSE_TIMEOUT,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Move the customers `shards plan` counts (after a shard was added or a weight changed) to
    the shards the placement picks, one at a time, online, in customer id order. Stopped
    anywhere, it is resumed by running it again. Exits 1 when a move rolled back."""

    async def work() -> tuple[list[PlannedMove], Progress | None]:
        async with await _sharded(context) as gateway:
            planned = rebalance_moves(
                await directory_entries(gateway.pool), _placement(gateway), max_moves
            )
            return await _carry_out(gateway, planned, rate, pause_timeout, dry_run)

    _report(*run(work), as_json=as_json)


@shards_app.command("drain")
def drain(
    context: typer.Context,
    shard: Annotated[str, typer.Argument(help="The shard to empty.")],
    rate: Rate = None,
    pause_timeout: PauseTimeout = DEFAULT_PAUSE_TIMEOUT,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Move every customer of SHARD to the shard the placement picks among the others, one at
    a time, online, so that SHARD can be retired. Stopped anywhere, it is resumed by running it
    again. Exits 1 when a move rolled back or customers are left on SHARD."""

    async def work() -> tuple[list[PlannedMove], Progress | None, int]:
        async with await _sharded(context) as gateway:
            if shard not in gateway.settings.postgres.shards:
                configured = ", ".join(sorted(gateway.settings.postgres.shards))
                err.print(f"no shard {shard!r} (shards: {configured})", highlight=False)
                raise typer.Exit(2)
            entries = await directory_entries(gateway.pool)
            try:
                planned = drain_moves(entries, _placement(gateway), shard)
            except ValueError as error:
                err.print(str(error), highlight=False)
                raise typer.Exit(2) from None
            carried = await _carry_out(gateway, planned, rate, pause_timeout, dry_run)
            left = sum(1 for _, on in await directory_entries(gateway.pool) if on == shard)
            return (*carried, left)

    planned, progress, left = run(work)
    _report(planned, progress, as_json=as_json, left=(shard, left) if progress else None)
    if progress is not None and left:
        raise typer.Exit(1)


def _placement(gateway: Gateway) -> list[Shard]:
    return [Shard(name, shard.weight) for name, shard in gateway.settings.postgres.shards.items()]


async def _carry_out(
    gateway: Gateway,
    planned: list[PlannedMove],
    rate: float | None,
    pause_timeout: float,
    dry_run: bool,
) -> tuple[list[PlannedMove], Progress | None]:
    if dry_run:
        return planned, None

    async def move_one(move: PlannedMove) -> int:
        result = await gateway.sharding.move_customer(
            move.customer_id, move.target, pause_timeout=pause_timeout
        )
        if result.move.state is not MoveState.DONE:
            raise MoveRolledBack(result.move.last_error or result.move.state.value)
        return result.rows

    def progress_line(progress: Progress) -> None:
        done = progress.moved + len(progress.failed)
        err.print(
            f"{done}/{progress.planned}: {progress.moved} moved, {len(progress.failed)} failed, "
            f"{progress.customers_per_second:.1f} customers/s, "
            f"{progress.rows_per_second:.0f} rows/s",
            highlight=False,
        )

    return planned, await carry_out(planned, move_one, rate=rate, on_progress=progress_line)


def _report(
    planned: list[PlannedMove],
    progress: Progress | None,
    *,
    as_json: bool,
    left: tuple[str, int] | None = None,
) -> None:
    if as_json:
        shown: dict[str, object] = {
            "planned": [
                {"customer_id": str(m.customer_id), "from": m.source, "to": m.target}
                for m in planned
            ]
        }
        if progress is not None:
            shown["progress"] = progress.as_json()
        if left is not None:
            shown["left"] = {"shard": left[0], "customers": left[1]}
        out.print_json(json.dumps(shown))
    else:
        out.print(render.planned_moves_table(planned, progress))
        if left is not None:
            out.print(f"shard {left[0]} holds {left[1]} customer(s)", highlight=False)
    if progress is not None:
        for move, reason in progress.failed:
            err.print(f"customer {move.customer_id} not moved: {reason}", highlight=False)
        if progress.stopped_early:
            err.print("stopped: moves kept failing", highlight=False)
        if progress.failed:
            raise typer.Exit(1)
