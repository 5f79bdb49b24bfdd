"""The gateway over a real PostgreSQL cluster (three nodes under Patroni) while its primary
moves: the read router re-learns which node is a standby, and a chaos run through the API with
two relays loses and duplicates nothing through a switchover, a crashed primary and a primary
cut off from the others, in synchronous mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.chaos import ChaosPlan, fault_schedule, run_chaos, verdict
from bench.common import scratch_gateway
from gateway import Gateway, Settings
from gateway.configuration.settings import PostgresSettings
from gateway.postgres.replicas import ReplicaState
from support.eventually import eventually
from support.ha_cluster import HaCluster
from support.shop import Shop


@pytest.fixture
async def cluster() -> AsyncIterator[HaCluster]:
    """The cluster held for one test, whole before and after it."""
    found = HaCluster.from_environment()
    async with found.exclusive():
        await found.restore()
        try:
            yield found
        finally:
            await found.restore()


def host(state: ReplicaState) -> str:
    return urlsplit(state.name).hostname or ""


async def test_reads_follow_the_roles_when_the_primary_moves(cluster: HaCluster) -> None:
    async with scratch_gateway(pool_size=2, service="postgres-ha") as scratch:
        url = scratch.settings.postgres.url.get_secret_value()
        postgres = PostgresSettings(
            url=url, read_from_standbys=True, replica_check_interval_seconds=0.2
        )
        async with await Gateway.connect(Settings(postgres=postgres)) as gateway:
            old = await cluster.wait_for_leader()
            old_host = cluster.host_of(old.name)
            states = {host(state): state for state in gateway.replicas}
            assert set(states) == {cluster.host_of(name) for name in cluster.nodes}
            await eventually(lambda: states[old_host].as_dict(5.0)["state"] == "primary")

            new = await cluster.switchover()
            await cluster.wait_for_streaming_replicas(2, within=120)
            new_host = cluster.host_of(new.name)
            await eventually(lambda: states[new_host].as_dict(5.0)["state"] == "primary")
            await eventually(lambda: states[old_host].usable, within=60)

            shop = Shop(gateway)
            customer, product = await shop.customer(), await shop.product()
            order = await gateway.place_order(shop.order(customer, (product, 1)))
            read_before = states[old_host].reads
            for _ in range(20):
                read = await gateway.get_order(order.id, consistency_token=order.consistency_token)
                assert read.version == order.version
            # The old primary, a standby now, serves reads again; the new one serves none.
            assert states[old_host].reads > read_before
            assert states[new_host].reads == 0


async def test_nothing_is_lost_or_duplicated_while_the_primary_moves(tmp_path: Path) -> None:
    # The run holds the cluster itself, and makes it whole before and after.
    plan = ChaosPlan(
        orders=2_400,
        rate=30,
        stores=("redis", "mongodb"),
        cluster=True,
        cluster_mode="sync",
        partition_seconds=5,
    )
    plan = replace(plan, faults=tuple(f for f in fault_schedule(plan, 1) if f.kind != "kill-api"))
    report = await run_chaos(plan, tmp_path)

    assert verdict(report) == [], report["requests"]
    moves = [w for w in report["faults"] if w["primary"] is not None]
    assert sorted(w["kind"] for w in moves) == ["failover", "partition-primary", "switchover"]
    for window in moves:
        old, new = window["primary"]
        assert old != new, window
        # The relays delivered again after each move, well within a lease (6 s here).
        assert window["resume_seconds"] is not None and window["resume_seconds"] < 6, window
    assert report["orders"]["acknowledged_missing"] == 0
    # Every refusal the client met was a 503 with Retry-After, never another server error.
    failed = report["requests"]["failed_attempts_by_kind"]
    assert [kind for kind in failed if kind.startswith("HTTP") and kind != "HTTP 503"] == []
