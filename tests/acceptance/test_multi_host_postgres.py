"""A PostgreSQL URL naming several hosts, against a real primary and its real hot standby:
writes find the primary whichever host is listed first, the standbys among the hosts serve
reads, and the readiness probe and the doctor say which node is the primary."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from gateway import Gateway, Settings
from gateway.configuration.settings import PostgresSettings
from gateway.errors import GatewayError
from gateway.operations.doctor import diagnose, healthy
from gateway.postgres.database import DatabaseUnavailable, create_pool
from support.api_process import api_server, write_config
from support.eventually import eventually
from support.servers import server_url
from support.shop import Shop
from tests.acceptance.conftest import DatabaseFactory, create_migrated_database


def cluster_url(url: str, *hosts: str, attrs: str = "read-write") -> str:
    """``url`` with its host replaced by ``hosts`` and asking for ``attrs``."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{','.join(hosts)}"
    return urlunsplit(parts._replace(netloc=netloc, query=f"target_session_attrs={attrs}"))


def host_of(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2]


@pytest.fixture
async def database(create_database: DatabaseFactory) -> tuple[str, str, str]:
    """A migrated database's URL, the primary's host and the standby's host, once the standby
    has replayed the database's creation and migrations (asyncpg, unlike libpq, does not try
    the next host when one answers that the database does not exist)."""
    url = await create_migrated_database(create_database)
    await standby_replayed(url, server_url("postgres-replica"))
    return url, host_of(url), host_of(server_url("postgres-replica"))


async def standby_replayed(primary_url: str, standby_url: str) -> None:
    """Wait until the standby has replayed the primary's WAL up to now."""
    primary = await asyncpg.connect(primary_url)
    try:
        written = await primary.fetchval("SELECT pg_current_wal_lsn()")
    finally:
        await primary.close()
    standby = await asyncpg.connect(standby_url)
    try:

        async def caught_up() -> bool:
            return bool(
                await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", written)
            )

        await eventually(caught_up, within=60)
    finally:
        await standby.close()


async def test_writes_reach_the_primary_when_a_standby_is_listed_first(
    database: tuple[str, str, str],
) -> None:
    url, primary, standby = database
    settings = Settings(postgres=PostgresSettings(url=cluster_url(url, standby, primary)))
    async with await Gateway.connect(settings) as gateway:
        shop = Shop(gateway)
        customer, product = await shop.customer(), await shop.product()
        order = await gateway.place_order(shop.order(customer, (product, 1)))
        assert (await gateway.get_order(order.id)).version == order.version
        async with gateway.pool.acquire() as connection:
            assert not await connection.fetchval("SELECT pg_is_in_recovery()")


async def test_with_no_primary_among_the_hosts_connecting_is_an_unavailability(
    database: tuple[str, str, str],
) -> None:
    url, _, standby = database
    settings = PostgresSettings(url=cluster_url(url, standby, standby))
    with pytest.raises(DatabaseUnavailable):
        await create_pool(settings)


async def test_the_standbys_among_the_hosts_serve_reads_and_the_primary_is_named(
    database: tuple[str, str, str],
) -> None:
    url, primary, standby = database
    postgres = PostgresSettings(
        url=cluster_url(url, primary, standby),
        read_from_standbys=True,
        replica_check_interval_seconds=0.1,
    )
    async with await Gateway.connect(Settings(postgres=postgres)) as gateway:
        states = {urlsplit(s.name).netloc.rpartition("@")[2]: s for s in gateway.replicas}
        assert set(states) == {primary, standby}
        await eventually(lambda: states[standby].usable and states[standby].lag_seconds == 0.0)
        assert states[primary].as_dict(5.0)["state"] == "primary"
        assert not states[primary].usable
        shop = Shop(gateway)
        customer, product = await shop.customer(), await shop.product()
        order = await gateway.place_order(shop.order(customer, (product, 1)))
        read = await gateway.get_order(order.id, consistency_token=order.consistency_token)
        assert read.version == order.version
        assert states[standby].reads >= 1

    report = await diagnose(postgres, {}, timeout_seconds=5)
    assert report["replication"]["primary"]["address"] == primary
    assert report["replication"]["primary"]["timeline"] >= 1
    assert healthy(report)


async def test_readyz_names_the_primary_node_and_its_timeline(
    database: tuple[str, str, str], tmp_path: Path
) -> None:
    url, primary, standby = database
    config = write_config(tmp_path, {"postgres": {"url": cluster_url(url, standby, primary)}})
    async with api_server(config) as api, httpx.AsyncClient(base_url=api.url) as client:
        body = (await client.get("/readyz")).json()
    assert body["status"] == "ready"
    assert body["postgres"]["primary"]["address"] == primary
    assert body["postgres"]["primary"]["timeline"] >= 1
    assert [s["state"] for s in body["standbys"]] == ["streaming"]


def test_a_cluster_url_without_a_role_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="target_session_attrs=read-write"):
        PostgresSettings(url="postgresql://u:p@h1:5432,h2:5432/x")
    assert issubclass(DatabaseUnavailable, GatewayError)
