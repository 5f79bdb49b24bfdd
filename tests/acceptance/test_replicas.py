"""Reads from a real PostgreSQL hot standby streaming from the primary, with read-your-writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from gateway import Gateway, Settings
from gateway.configuration.settings import PostgresSettings, RedisSinkSettings
from gateway.errors import GatewayError
from gateway.operations.doctor import diagnose, healthy
from gateway.operations.verify import verify_configured
from gateway.order_ids import shard_tag
from gateway.postgres.database import Connection, create_pool
from gateway.postgres.replicas import (
    ReadRouter,
    consistency_position,
    parse_lsn,
    streaming_replica,
)
from gateway.postgres.tokens import ConsistencyToken, format_token
from support.api_process import api_server, write_config
from support.databases import database_url
from support.eventually import eventually
from support.servers import managed, server_url, start_server, stop_server
from support.shop import Shop
from tests.acceptance.conftest import DatabaseFactory, create_migrated_database
from tests.acceptance.relay_support import World

REPLICA = "postgres-replica"


@pytest.fixture(scope="module")
def replica_server() -> str:
    """URL of a hot standby of the test PostgreSQL (its maintenance database)."""
    return server_url(REPLICA)


@pytest.fixture
async def replica_admin(replica_server: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the standby; replay is resumed on the way out."""
    connection = await asyncpg.connect(replica_server)
    try:
        yield connection
    finally:
        await connection.execute("SELECT pg_wal_replay_resume()")
        await connection.close()


def replicated_settings(primary_url: str, replica_server: str, **postgres: Any) -> Settings:
    """Settings over ``primary_url`` with the same database on the standby as a replica."""
    name = urlsplit(primary_url).path.lstrip("/")
    return Settings(
        postgres=PostgresSettings(
            url=primary_url,
            replicas=[database_url(replica_server, name)],
            replica_check_interval_seconds=0.1,
            **postgres,
        )
    )


@asynccontextmanager
async def replica_router(
    primary_url: str, replica_server: str, **postgres: Any
) -> AsyncIterator[ReadRouter]:
    """A read router over ``primary_url`` and its standby, once the standby streams it."""
    settings = replicated_settings(primary_url, replica_server, **postgres).postgres
    primary = await create_pool(settings)
    router = ReadRouter(primary, settings)
    try:
        await router.start()
        [replica] = router.states
        await eventually(lambda: replica.usable and replica.lag_seconds == 0.0, within=30)
        yield router
    finally:
        await router.close()
        await primary.close()


async def on_standby(connection: Connection) -> bool:
    """Whether a read runs on a standby (rather than on the primary)."""
    return bool(await connection.fetchval("SELECT pg_is_in_recovery()"))


async def flushed_position(connection: Connection) -> int:
    """The primary's WAL position flushed so far."""
    return parse_lsn(await connection.fetchval("SELECT pg_current_wal_flush_lsn()::text"))


@pytest.fixture
async def replicated(
    create_database: DatabaseFactory, replica_server: str
) -> AsyncIterator[tuple[Gateway, Shop]]:
    """A gateway over a fresh database, reading from the standby once it streams it."""
    url = await create_migrated_database(create_database)
    settings = replicated_settings(url, replica_server, replica_wait_ms=20)
    async with await Gateway.connect(settings) as gateway:
        await eventually(lambda: gateway.replicas[0].usable, within=30)
        yield gateway, Shop(gateway)


async def test_after_each_of_1000_writes_a_read_with_its_token_sees_it(
    replicated: tuple[Gateway, Shop], replica_admin: asyncpg.Connection
) -> None:
    gateway, shop = replicated
    customer, product = await shop.customer(), await shop.product(stock=10_000)
    [replica] = gateway.replicas
    seen_from_primary = 0
    for write in range(1000):
        if write == 400:
            await replica_admin.execute("SELECT pg_wal_replay_pause()")
        if write == 700:
            await replica_admin.execute("SELECT pg_wal_replay_resume()")
        replica_reads = replica.reads
        if write % 2 == 0:
            order = await gateway.place_order(shop.order(customer, (product, 1)))
        else:
            order = await gateway.transition(order.id, "confirmed")
        assert order.consistency_token is not None
        read = await gateway.get_order(order.id, consistency_token=order.consistency_token)
        assert (read.version, read.status) == (order.version, order.status)
        seen_from_primary += replica.reads == replica_reads
    # Replay was paused for 300 writes: those were read from the primary; the others from
    # the replica (which had replayed each write before the read).
    assert seen_from_primary >= 300
    assert replica.reads >= 600


async def test_a_shard_s_token_sends_the_read_to_the_primary(
    replicated: tuple[Gateway, Shop],
) -> None:
    gateway, shop = replicated
    customer, product = await shop.customer(), await shop.product()
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    [replica] = gateway.replicas
    await eventually(lambda: replica.usable and replica.lag_seconds == 0.0, within=30)
    # Position 0, which the replica has replayed: as a shard's, it says nothing of this
    # database's replicas.
    foreign = format_token(ConsistencyToken(0, shard_tag("alpha")))
    before = replica.reads
    assert (await gateway.get_order(order.id, consistency_token=foreign)).id == order.id
    assert replica.reads == before
    assert (await gateway.get_order(order.id)).id == order.id  # no token: the replica
    assert replica.reads == before + 1


async def test_a_page_of_a_customer_s_orders_read_with_a_token_holds_the_last_order(
    replicated: tuple[Gateway, Shop],
) -> None:
    gateway, shop = replicated
    customer, product = await shop.customer(), await shop.product()
    placed = [await gateway.place_order(shop.order(customer, (product, 1))) for _ in range(3)]
    page = await gateway.customer_orders(
        customer.id, limit=2, consistency_token=placed[-1].consistency_token
    )
    assert [order.id for order in page.orders] == [placed[2].id, placed[1].id]
    assert page.next_cursor is not None
    rest = await gateway.customer_orders(customer.id, limit=2, before=page.next_cursor)
    assert [order.id for order in rest.orders] == [placed[0].id]
    assert rest.next_cursor is None


async def test_reads_without_a_token_skip_a_replica_lagging_past_the_limit(
    create_database: DatabaseFactory, replica_server: str, replica_admin: asyncpg.Connection
) -> None:
    url = await create_migrated_database(create_database)
    settings = replicated_settings(url, replica_server, replica_max_lag_seconds=0.5)
    async with await Gateway.connect(settings) as gateway:
        [replica] = gateway.replicas
        await eventually(lambda: replica.usable and replica.lag_seconds == 0.0, within=30)
        shop = Shop(gateway)
        customer, product = await shop.customer(), await shop.product()
        order = await gateway.place_order(shop.order(customer, (product, 1)))

        await replica_admin.execute("SELECT pg_wal_replay_pause()")
        await gateway.transition(order.id, "confirmed")
        await eventually(lambda: (replica.lag_seconds or 0.0) > 0.5, within=30)
        before = replica.reads
        for _ in range(50):
            assert (await gateway.get_order(order.id)).status == "confirmed"
        assert replica.reads == before  # every read came from the primary

        await replica_admin.execute("SELECT pg_wal_replay_resume()")
        await eventually(lambda: replica.lag_seconds == 0.0, within=30)
        assert (await gateway.get_order(order.id)).status == "confirmed"
        assert replica.reads == before + 1


async def test_with_the_replica_stopped_reads_answer_and_return_to_it_once_it_is_back(
    replicated: tuple[Gateway, Shop],
) -> None:
    if not managed(REPLICA):
        pytest.fail("the replica must be run by scripts/services.sh for this test to stop it")
    gateway, shop = replicated
    customer, product = await shop.customer(), await shop.product()
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    [replica] = gateway.replicas
    stop_server(REPLICA)
    try:
        for _ in range(20):
            assert (await gateway.get_order(order.id)).id == order.id
            read = await gateway.get_order(order.id, consistency_token=order.consistency_token)
            assert read.version == order.version
        await eventually(lambda: not replica.reachable, within=10)
        assert not replica.as_dict(5.0)["in_use"]
    finally:
        start_server(REPLICA)
    await eventually(lambda: replica.usable, within=60)
    served = replica.reads

    async def replica_serves_again() -> bool:
        await gateway.get_order(order.id)
        return replica.reads > served

    await eventually(replica_serves_again, within=30)


async def test_doctor_reports_the_replica_and_the_primary_s_view_of_it(
    migrated_url: str, replica_server: str
) -> None:
    settings = replicated_settings(migrated_url, replica_server)
    report: dict[str, Any] = {}

    async def streaming() -> bool:
        # a replica an earlier test restarted lags past the limit (not in use) until it has
        # caught up
        nonlocal report
        report = await diagnose(settings.postgres, {}, timeout_seconds=10)
        replicas, standbys = report["replication"]["replicas"], report["replication"]["standbys"]
        return (
            bool(replicas and standbys)
            and replicas[0]["in_use"] is True
            and standbys[0]["state"] == "streaming"
        )

    await eventually(streaming, within=60)
    [replica] = report["replication"]["replicas"]
    assert replica["state"] == "streaming" and replica["in_use"] is True
    assert replica["lag_bytes"] is not None and replica["lag_seconds"] is not None
    standbys = report["replication"]["standbys"]
    assert standbys and standbys[0]["state"] == "streaming"
    assert healthy(report)


async def test_verify_reads_postgresql_from_a_streaming_replica_when_asked(
    world: World, replica_server: str
) -> None:
    primary_url = world.settings.postgres.url.get_secret_value()
    settings = replicated_settings(primary_url, replica_server).model_copy(
        update={
            "sinks": {
                "redis": RedisSinkSettings(
                    type="redis",
                    url=server_url("redis"),
                    key_prefix=f"replica-verify-{uuid.uuid4().hex[:8]}:",
                )
            }
        }
    )
    customer, product = await world.shop.customer(), await world.shop.product()
    await world.gateway.place_order(world.shop.order(customer, (product, 1)))

    async def replica_shows_the_order_missing_from_redis() -> bool:
        [drift] = await verify_configured(settings, ["redis"], 100, from_replica=True)
        return drift.missing == 1

    await eventually(replica_shows_the_order_missing_from_redis, within=30)

    on_primary = PostgresSettings(url=primary_url, replicas=[primary_url])
    with pytest.raises(GatewayError, match=r"no configured replica is streaming.*promoted"):
        await streaming_replica(on_primary)
    with pytest.raises(GatewayError, match="no replica is configured"):
        await streaming_replica(settings.postgres.model_copy(update={"replicas": []}))


async def test_the_api_hands_out_tokens_and_serves_pages_of_a_customer_s_orders(
    create_database: DatabaseFactory, replica_server: str, tmp_path: Path
) -> None:
    url = await create_migrated_database(create_database)
    name = urlsplit(url).path.lstrip("/")
    config = write_config(
        tmp_path,
        {
            "postgres": {"url": url, "replicas": [database_url(replica_server, name)]},
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    async with (
        api_server(config) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        await Gateway.connect(replicated_settings(url, replica_server)) as gateway,
    ):
        shop = Shop(gateway)
        customer, product = await shop.customer(), await shop.product()
        tokens = []
        for number in range(5):
            response = await http.post(
                "/orders",
                json=shop.order(customer, (product, 1)),
                headers={"Idempotency-Key": f"replica-test-{number}"},
            )
            assert response.status_code == 201, response.text
            tokens.append(response.headers["Fanout-Consistency-Token"])
        order_id = response.json()["id"]
        read = await http.get(
            f"/orders/{order_id}", headers={"Fanout-Consistency-Token": tokens[-1]}
        )
        assert read.status_code == 200 and read.json()["id"] == order_id

        first = await http.get(
            f"/customers/{customer.id}/orders",
            params={"limit": 3},
            headers={"Fanout-Consistency-Token": tokens[-1]},
        )
        assert first.status_code == 200
        body = first.json()
        assert len(body["orders"]) == 3 and body["orders"][0]["id"] == order_id
        assert 'rel="next"' in first.headers["Link"]
        second = await http.get(
            f"/customers/{customer.id}/orders", params={"limit": 3, "cursor": body["next_cursor"]}
        )
        assert len(second.json()["orders"]) == 2 and second.json()["next_cursor"] is None

        bad_token = await http.get(
            f"/orders/{order_id}", headers={"Fanout-Consistency-Token": "yesterday"}
        )
        assert bad_token.status_code == 422
        assert bad_token.json()["errors"][0]["field"] == "Fanout-Consistency-Token"
        bad_cursor = await http.get(
            f"/customers/{customer.id}/orders", params={"cursor": "not-a-cursor"}
        )
        assert bad_cursor.status_code == 422
        assert bad_cursor.json()["errors"][0]["field"] == "cursor"
        ready = (await http.get("/readyz")).json()
        assert ready["replicas"][0]["state"] == "streaming"
        assert ready["standbys"]


async def test_a_read_that_finds_the_replica_s_pool_busy_goes_to_the_primary_and_leaves_it_up(
    create_database: DatabaseFactory, replica_server: str
) -> None:
    url = await create_database()
    async with replica_router(url, replica_server, pool_min_size=1, pool_max_size=1) as router:
        [replica] = router.states
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold_the_connection(connection: Connection) -> bool:
            holding.set()
            await release.wait()
            return await on_standby(connection)

        holder = asyncio.create_task(router.run(hold_the_connection))
        try:
            await asyncio.wait_for(holding.wait(), 30)
            # The replica's only connection stays taken: the read waits for one, then goes
            # to the primary; the replica is busy, not down.
            assert await router.run(on_standby) is False
            assert replica.reachable and replica.error is None
            checked = replica.checked_at
            await eventually(lambda: replica.checked_at > checked, within=30)
            assert replica.usable and replica.error is None
        finally:
            release.set()
        assert await holder is True
        assert await router.run(on_standby) is True


async def test_a_read_the_standby_cancels_for_a_recovery_conflict_runs_on_the_primary(
    create_database: DatabaseFactory, replica_server: str, replica_admin: asyncpg.Connection
) -> None:
    url = await create_database()
    name = urlsplit(url).path.lstrip("/")
    primary = await asyncpg.connect(url)
    await replica_admin.execute("ALTER SYSTEM SET max_standby_streaming_delay = 0")
    await replica_admin.execute("SELECT pg_reload_conf()")
    try:
        await primary.execute(
            "CREATE TABLE conflict_probe (n int);"
            "INSERT INTO conflict_probe SELECT generate_series(1, 1000)"
        )
        written = await flushed_position(primary)
        async with replica_router(url, replica_server, replica_wait_ms=10_000) as router:
            [replica] = router.states

            async def count_slowly(connection: Connection) -> tuple[bool, int]:
                # Holds its snapshot on the standby until replay cancels it (at most a minute).
                row = await connection.fetchrow(
                    "SELECT pg_is_in_recovery() AS on_standby, count(*) AS rows"
                    " FROM conflict_probe,"
                    " pg_sleep(CASE WHEN pg_is_in_recovery() THEN 60 ELSE 0 END)"
                )
                assert row is not None
                return row["on_standby"], row["rows"]

            read = asyncio.create_task(router.run(count_slowly, ConsistencyToken(written)))

            async def standby_runs_the_read() -> bool:
                return bool(
                    await replica_admin.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                        " AND state = 'active' AND query LIKE '%conflict_probe%'",
                        name,
                    )
                )

            await eventually(standby_runs_the_read, within=30)
            await primary.execute("DELETE FROM conflict_probe")
            await primary.execute("VACUUM conflict_probe")
            assert await asyncio.wait_for(read, 60) == (False, 0)
            assert replica.reachable and replica.error is None
            assert await router.run(on_standby) is True
    finally:
        await replica_admin.execute("ALTER SYSTEM RESET max_standby_streaming_delay")
        await replica_admin.execute("SELECT pg_reload_conf()")
        await primary.close()


async def newest_probe(connection: Connection) -> tuple[bool, int]:
    """Where the read ran (True: a standby) and the newest row of ``token_probe`` it sees."""
    row = await connection.fetchrow(
        "SELECT pg_is_in_recovery() AS on_standby, max(n) AS newest FROM token_probe"
    )
    assert row is not None
    return row["on_standby"], row["newest"]


async def test_a_token_asks_a_standby_for_no_wal_the_primary_has_not_sent(
    create_database: DatabaseFactory, replica_server: str
) -> None:
    url = await create_database()
    writer, other = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await writer.execute("CREATE TABLE token_probe (n int)")
        async with replica_router(url, replica_server, replica_wait_ms=10_000) as router:
            for n in range(20):
                await writer.execute("INSERT INTO token_probe VALUES ($1)", n)
                # WAL written after the commit and flushed only later (by the WAL writer or
                # the next commit), as the relay's asynchronous commits and page pruning are.
                await other.execute("SELECT pg_logical_emit_message(false, 'probe', 'later')")
                token = await consistency_position(writer)
                # A standby receives flushed WAL only: a token past it would keep reads off
                # every replica until something else is flushed.
                assert token <= await flushed_position(writer)
                assert await router.run(newest_probe, ConsistencyToken(token)) == (True, n)
    finally:
        await writer.close()
        await other.close()


async def test_after_an_asynchronous_commit_a_token_still_covers_the_write(
    create_database: DatabaseFactory, replica_server: str
) -> None:
    url = await create_database()
    writer = await asyncpg.connect(url)
    try:
        await writer.execute("CREATE TABLE token_probe (n int)")
        await writer.execute("SET synchronous_commit TO off")
        async with replica_router(url, replica_server, replica_wait_ms=10_000) as router:
            for n in range(20):
                await writer.execute("INSERT INTO token_probe VALUES ($1)", n)
                # Past the commit record, which need not be flushed yet.
                written = parse_lsn(
                    await writer.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                )
                token = await consistency_position(writer)
                assert token >= written
                assert (await router.run(newest_probe, ConsistencyToken(token)))[1] == n
    finally:
        await writer.close()
