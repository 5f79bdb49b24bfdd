"""The postgres-ha cluster itself (three PostgreSQL nodes under Patroni, each in a network
namespace of its own): a switchover, a crashed primary and a partitioned primary each leave one
writable leader, and the old primary comes back as a streaming replica on the new timeline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.configuration.settings import PostgresSettings
from gateway.postgres.database import create_pool
from gateway.postgres.queries import query as named_query
from gateway.postgres.server_runs import ServerRuns
from support.eventually import eventually
from support.ha_cluster import LOOP_WAIT, TTL, HaCluster, Member


@pytest.fixture(scope="module")
async def cluster() -> HaCluster:
    """The running cluster, whole: a leader and two streaming replicas."""
    found = HaCluster.from_environment()
    await found.wait_for_streaming_replicas(2, within=120)
    return found


@pytest.fixture
async def changing(cluster: HaCluster) -> AsyncIterator[HaCluster]:
    """The cluster held for one test that changes it, made whole again (in sync mode) after."""
    async with cluster.exclusive():
        await cluster.restore()
        try:
            yield cluster
        finally:
            await cluster.restore()


async def query(cluster: HaCluster, name: str, sql: str, *arguments: object) -> object:
    """The value of ``sql`` on node ``name`` alone."""
    connection = await asyncpg.connect(cluster.node_url(name), timeout=5)
    try:
        return await connection.fetchval(sql, *arguments, timeout=5)
    finally:
        await connection.close()


async def in_recovery(cluster: HaCluster, name: str) -> bool:
    """Whether node ``name`` runs as a standby (False while it does not answer)."""
    try:
        return await query(cluster, name, "SELECT pg_is_in_recovery()") is True
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False


async def accepts_writes(cluster: HaCluster, name: str) -> bool:
    """Whether node ``name`` runs as a primary (False while it does not answer: a leader cut off
    from etcd demotes itself by stopping its PostgreSQL until etcd is back)."""
    try:
        return await query(cluster, name, "SELECT NOT pg_is_in_recovery()") is True
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False


async def answers(pool: asyncpg.Pool) -> bool:
    """Whether a query through ``pool`` is answered (its broken connections are replaced)."""
    try:
        return await pool.fetchval("SELECT true", timeout=5) is True
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False


def member(members: list[Member], name: str) -> Member:
    return next(m for m in members if m.name == name)


async def write_marker(cluster: HaCluster) -> str:
    """A row written through the cluster's read-write URL; its text."""
    text = f"marker-{time.monotonic_ns()}"
    connection = await asyncpg.connect(cluster.url, timeout=10)
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS ha_markers (text text PRIMARY KEY)")
        await connection.execute("INSERT INTO ha_markers VALUES ($1)", text)
    finally:
        await connection.close()
    return text


async def test_the_cluster_url_reaches_the_writable_leader(cluster: HaCluster) -> None:
    leader = await cluster.wait_for_leader()
    connection = await asyncpg.connect(cluster.url, timeout=10)
    try:
        server = await connection.fetchval("SELECT host(inet_server_addr())")
        assert await connection.fetchval("SELECT pg_is_in_recovery()") is False
        assert await connection.fetchval("SELECT current_database()") == "fanout"
    finally:
        await connection.close()
    assert server == cluster.host_of(leader.name)


async def test_a_switchover_moves_the_leader_and_the_old_one_streams_again(
    changing: HaCluster,
) -> None:
    old = await changing.wait_for_leader()
    runs = ServerRuns()
    settings = PostgresSettings(url=changing.url, pool_min_size=1, pool_max_size=1)
    pool = await create_pool(settings, on_connect=runs.observe)

    try:
        new = await changing.switchover()
        # The pool's next connection reaches the new primary, and is counted before it answers.
        await eventually(lambda: answers(pool), within=30)
    finally:
        await pool.close()

    assert runs.changes >= 2
    assert runs.current == await query(changing, new.name, named_query("current_server_run"))
    assert new.name != old.name
    assert await query(changing, new.name, "SELECT pg_is_in_recovery()") is False
    members = await changing.wait_for_streaming_replicas(2, within=60)
    assert member(members, old.name).is_streaming_replica
    assert await in_recovery(changing, old.name)


async def test_a_killed_postmaster_fails_over_at_once_and_the_old_primary_rejoins(
    changing: HaCluster,
) -> None:
    marker = await write_marker(changing)
    before = await changing.wait_for_leader()

    killed = await changing.kill_primary_postmaster()
    started = time.monotonic()
    new = await changing.wait_for_leader(excluding=killed.name, within=TTL + LOOP_WAIT)
    failover = time.monotonic() - started

    print(f"new leader {failover:.1f} s after the postmaster was killed")
    assert failover <= TTL + LOOP_WAIT
    assert before.timeline is not None
    timeline = await changing.wait_for_timeline(new.name, above=before.timeline)
    rejoined = await changing.wait_for_timeline(killed.name, above=before.timeline, within=90)
    assert rejoined == timeline
    members = await changing.wait_for_streaming_replicas(2, within=90)
    assert member(members, killed.name).is_streaming_replica
    marked = "SELECT count(*) FROM ha_markers WHERE text = $1"
    assert await query(changing, killed.name, marked, marker) == 1


async def test_a_partitioned_leader_demotes_itself_and_comes_back_as_a_replica_when_healed(
    changing: HaCluster,
) -> None:
    old = await changing.wait_for_leader()
    assert await accepts_writes(changing, old.name)

    await changing.partition(old.name)
    started = time.monotonic()

    async def demoted_itself() -> bool:
        return not await accepts_writes(changing, old.name)

    await eventually(demoted_itself, within=TTL)
    demoted = time.monotonic() - started
    new = await changing.wait_for_leader(excluding=old.name, within=TTL + LOOP_WAIT + 10)

    print(f"demoted {demoted:.1f} s, new leader {time.monotonic() - started:.1f} s after the cut")
    assert demoted <= TTL
    assert new.name != old.name
    assert not await accepts_writes(changing, old.name)

    await changing.heal(old.name)
    assert old.timeline is not None
    timeline = await changing.wait_for_timeline(new.name, above=old.timeline)
    assert await changing.wait_for_timeline(old.name, above=old.timeline, within=90) == timeline
    members = await changing.wait_for_streaming_replicas(2, within=90)
    assert member(members, old.name).is_streaming_replica


async def test_the_replication_mode_changes_at_run_time(changing: HaCluster) -> None:
    await changing.set_mode("async")
    assert not any(m.role == "sync_standby" for m in await changing.members())
    assert (await changing.config())["synchronous_mode"] is False

    await changing.set_mode("strict")
    assert (await changing.config())["synchronous_mode_strict"] is True

    await changing.set_mode("sync")
    config = await changing.config()
    assert config["synchronous_mode"] is True and config["synchronous_mode_strict"] is False
    assert sum(m.role == "sync_standby" for m in await changing.members()) == 1


async def test_a_killed_node_started_again_runs_and_streams(changing: HaCluster) -> None:
    replica = next(m for m in await changing.members() if m.role != "leader")

    changing.kill_node(replica.name)
    assert not await changing.runs(replica.name)
    await changing.start_node(replica.name)

    assert await changing.runs(replica.name)
    assert await in_recovery(changing, replica.name)
    members = await changing.wait_for_streaming_replicas(2, within=60)
    assert member(members, replica.name).is_streaming_replica
