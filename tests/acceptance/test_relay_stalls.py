"""Against a real PostgreSQL: a relay whose worker is stuck in a call into its sink gives that
sink's partitions to another relay, and a partition claimed again starts from its stored
position (a rewind done while it was away holds)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from adapters.memory import MemorySink
from gateway.backoff import Backoff
from gateway.configuration.settings import MemorySinkSettings
from gateway.operations.rewind import rewind
from gateway.postgres.outbox import PARTITIONS
from gateway.relay import Relay, tables
from gateway.relay.context import WorkerContext
from gateway.relay.leases import SinkLeases
from gateway.relay.read_ahead import OutboxReads
from gateway.relay.storage import PostgresRelayStorage
from support.eventually import eventually
from tests.acceptance.relay_support import World, memory_state, positions_owned
from tests.relay_settings import FAST
from tests.wedged_sink import WedgedSink


async def test_a_relay_stuck_in_a_sink_call_hands_that_sink_to_another_relay(
    world: World,
) -> None:
    await world.place_orders(20)
    expected = await world.orders_in_postgres()
    wedged = WedgedSink("slow")
    # The timeout comes from the sink's own setting (the relay's default is 30 s).
    settings = world.settings.model_copy(
        update={
            "relay": FAST,
            "sinks": {"slow": MemorySinkSettings(type="memory", apply_timeout_seconds=0.2)},
        }
    )
    taker = MemorySink("slow")
    async with await Relay.connect(settings, [wedged, MemorySink("other")]) as stuck:
        running = asyncio.create_task(stuck.run())
        try:
            await asyncio.wait_for(wedged.entered.wait(), 30)
            second = world.relay(taker, MemorySink("other"))
            taking = asyncio.create_task(second.run())
            try:
                pool = world.gateway.pool
                await eventually(
                    lambda: _owned_by(pool, "slow", [second.instance_id] * 16), within=30
                )
                await eventually(lambda: memory_state(taker) == expected, within=30)
                # The stuck relay still serves its other sink.
                await eventually(
                    lambda: _owners_include(pool, "other", stuck.instance_id), within=30
                )
                stalled = await pool.fetchval(
                    "SELECT stalled_sinks FROM relay_instances WHERE id = $1", stuck.instance_id
                )
                assert stalled == ["slow"]
            finally:
                second.stop()
                await asyncio.wait_for(taking, 30)
        finally:
            wedged.release.set()
            stuck.stop()
            await asyncio.wait_for(running, 30)


async def _owned_by(pool: asyncpg.Pool, sink: str, owners: list[str]) -> bool:
    return await positions_owned(pool, sink) == owners


async def _owners_include(pool: asyncpg.Pool, sink: str, owner: str) -> bool:
    return owner in await positions_owned(pool, sink)


async def test_a_partition_claimed_again_starts_from_its_rewound_position(world: World) -> None:
    await world.place_orders(20)
    before_orders = datetime.now(UTC) - timedelta(hours=1)
    await world.drain(MemorySink("rewound"))
    pool = world.gateway.pool
    storage = PostgresRelayStorage(pool)
    delivered = await storage.positions("rewound", PARTITIONS)
    settings = FAST.model_copy(update={"lease_ttl_seconds": 1.0})
    leases = SinkLeases(
        "rewound",
        WorkerContext(
            storage=storage,
            reads=OutboxReads(storage.read_batch, 10, 1),
            settings=settings,
            backoff=Backoff(0.01, 0.1),
            instance_id="a",
            stopping=asyncio.Event(),
            live_instances=lambda: ["a"],
        ),
    )
    await leases.rebalance()
    assert leases.positions == delivered

    # Its leases lapse; another relay takes every partition and gives them back; an operator
    # rewinds the sink meanwhile.
    await eventually(lambda: _all_expired(pool, "rewound"), within=10)
    async with pool.acquire() as connection:
        assert await tables.claim_leases(connection, "rewound", "b", PARTITIONS, 60) == set(
            PARTITIONS
        )
        await tables.release_leases(connection, "rewound", "b", PARTITIONS)
        plan = await rewind(connection, "rewound", before_orders)
    assert plan.moves
    await leases.rebalance()

    rewound = await storage.positions("rewound", PARTITIONS)
    assert leases.owned == set(PARTITIONS)
    assert leases.positions == rewound
    assert all(rewound[p] < delivered[p] for p in plan.moves)


async def _all_expired(pool: asyncpg.Pool, sink: str) -> bool:
    expired: bool = await pool.fetchval(
        "SELECT bool_and(lease_expires_at < now()) FROM relay_positions WHERE sink = $1", sink
    )
    return expired
