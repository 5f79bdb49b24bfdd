"""``fanout rewind`` over a real PostgreSQL and Redis: the events kept since a time are
delivered again, exactly those, and never under a running relay's feet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.readback import ReadBack
from adapters.redis import RedisSink
from gateway.operations.verify import verify
from support.api_process import write_config
from support.stores import make_sink, store_settings
from tests.acceptance.relay_support import World
from tests.acceptance.test_history import fanout


@pytest.fixture
async def redis_sink(tmp_path: Path) -> AsyncIterator[RedisSink]:
    sink = make_sink("redis", tmp_path.name[-10:].replace("-", "_"))
    assert isinstance(sink, RedisSink)
    await sink.start()
    try:
        yield sink
    finally:
        await flush(sink)
        await sink.close()


async def flush(sink: RedisSink) -> None:
    keys = [key async for key in sink.client.scan_iter(match=sink.key_prefix + "*")]
    if keys:
        await sink.client.delete(*keys)


async def test_a_rewind_delivers_again_exactly_the_events_since_the_time(
    world: World, redis_sink: RedisSink, tmp_path: Path
) -> None:
    tag = redis_sink.key_prefix.removesuffix(":order:")
    config = write_config(
        tmp_path,
        {
            "postgres": {"url": world.settings.postgres.url.get_secret_value()},
            "sinks": {"redis": store_settings("redis", tag)},
        },
    )
    await world.place_orders(40)
    await world.drain(redis_sink)
    since = await world.gateway.pool.fetchval("SELECT now()")
    await world.place_orders(30, transitions=1)
    await world.drain(redis_sink)
    await flush(redis_sink)  # the store loses everything
    expected = await world.gateway.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE occurred_at >= $1", since
    )
    positions_before = await world.gateway.pool.fetch(
        "SELECT * FROM relay_positions WHERE sink = 'redis' ORDER BY partition"
    )

    dry = await fanout(
        config, "rewind", "--sink", "redis", "--to", since.isoformat(), "--dry-run", "--json"
    )

    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["events"] == expected == 30 * 2 + 1  # with the new customer
    assert (
        await world.gateway.pool.fetch(
            "SELECT * FROM relay_positions WHERE sink = 'redis' ORDER BY partition"
        )
        == positions_before
    )

    relay = world.relay(redis_sink)
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.ready.wait(), 30)
        refused = await fanout(
            config, "rewind", "--sink", "redis", "--to", since.isoformat(), "--yes"
        )
    finally:
        relay.stop()
        await running
    assert refused.returncode == 1 and "rewinding it" in refused.stderr

    done = await fanout(
        config, "rewind", "--sink", "redis", "--to", since.isoformat(), "--yes", "--json"
    )
    assert done.returncode == 0, done.stderr
    rewound = json.loads(done.stdout)
    assert rewound["rewound"] is True and rewound["events"] == expected
    await world.drain(redis_sink)

    drift = await verify(world.gateway.pool, "redis", redis_sink)
    assert isinstance(redis_sink, ReadBack)
    # The 30 orders changed since the time are back; the 40 before it are not re-delivered.
    assert (drift.matched, drift.missing) == (30, 40), drift.counts()

    unknown = await fanout(
        config, "rewind", "--sink", "nowhere", "--to", since.isoformat(), "--yes"
    )
    assert unknown.returncode == 1 and "nowhere" in unknown.stderr
    malformed = await fanout(config, "rewind", "--sink", "redis", "--to", "yesterday")
    assert malformed.returncode == 2 and "--to" in malformed.stderr
