"""The ``fanout`` commands in sharded mode, run as a user runs them, over the catalog and two
shards on three real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from support.servers import unused_port
from support.sharding import ShardedDatabases, sharded_databases


@pytest.fixture(scope="module")
async def unmigrated() -> AsyncIterator[ShardedDatabases]:
    async with sharded_databases(migrated=False) as found:
        yield found


@pytest.fixture(scope="module")
async def migrated() -> AsyncIterator[ShardedDatabases]:
    async with sharded_databases() as found:
        yield found


def fanout(databases: ShardedDatabases, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    env["FANOUT_POSTGRES_URL"] = databases.catalog
    env["FANOUT_POSTGRES_SHARDS"] = json.dumps(
        {name: {"url": url} for name, url in databases.shards.items()}
    )
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_the_commands_of_sharded_mode(unmigrated: ShardedDatabases) -> None:
    before = as_json(fanout(unmigrated, "migrate", "status", "--json"))
    assert set(before) == {"catalog", "alpha", "beta"}
    assert all(m["state"] == "pending" for rows in before.values() for m in rows)

    migrated = fanout(unmigrated, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "catalog: applied 0010_customer_directory_and_reservations" in migrated.stdout
    assert "alpha: applied 0011_shard_orders" in migrated.stdout
    assert "beta: applied 0011_shard_orders" in migrated.stdout
    after = as_json(fanout(unmigrated, "migrate", "status", "--json"))
    assert all(m["state"] == "applied" for rows in after.values() for m in rows)
    assert "shard_orders" not in {m["name"] for m in after["catalog"]}
    assert "customer_directory_and_reservations" not in {m["name"] for m in after["alpha"]}
    assert "up to date" in fanout(unmigrated, "migrate").stdout

    placed = as_json(fanout(unmigrated, "demo", "--orders", "3", "--walk", "--json"))
    again = as_json(fanout(unmigrated, "demo", "--orders", "2", "--json"))
    assert len({order["customer_id"] for order in placed + again}) == 1

    status = as_json(fanout(unmigrated, "shards", "status", "--json"))
    shards = status["shards"]
    assert sum(s["customers"] for s in shards.values()) == 1
    assert sum(s["orders"] for s in shards.values()) == 5
    assert sum(s["directory_customers"] for s in shards.values()) == 1
    assert status["skew"]["customers"] == 2.0  # one customer on one of two shards

    plan = as_json(fanout(unmigrated, "shards", "plan", "--json"))
    assert plan == {"customers": 1, "moving": 0, "moves": []}

    clean = as_json(fanout(unmigrated, "shards", "reconcile", "--json"))
    assert (clean["orders_checked"], clean["breaks"], clean["missing"]) == (5, [], {})
    catalog = await asyncpg.connect(unmigrated.catalog)
    try:
        broken = await catalog.fetchval(
            "UPDATE inventory_reservations SET status = 'released' WHERE order_id ="
            " (SELECT order_id FROM inventory_reservations LIMIT 1) RETURNING order_id"
        )
    finally:
        await catalog.close()
    found = fanout(unmigrated, "shards", "reconcile", "--dry-run", "--json")
    assert found.returncode == 1, found.stderr
    assert [b["order_id"] for b in json.loads(found.stdout)["breaks"]] == [str(broken)]
    repaired = as_json(fanout(unmigrated, "shards", "reconcile", "--json"))
    assert [(b["repair"], b["repaired"]) for b in repaired["breaks"]] == [("retake", True)]
    assert as_json(fanout(unmigrated, "shards", "reconcile", "--json"))["breaks"] == []

    report = as_json(fanout(unmigrated, "report", "--group-by", "status", "--json"))
    assert not report["partial"] and report["answered"] == ["alpha", "beta"]
    assert {row["bucket"]: row["orders"] for row in report["rows"]} == {
        "delivered": 1,
        "pending": 4,
    }

    per_database = as_json(fanout(unmigrated, "status", "--json"))
    assert set(per_database) == {"catalog", "alpha", "beta"}

    folds = as_json(fanout(unmigrated, "verify", "--events", "--json"))
    assert folds["checked"] == folds["matched"] == 5
    walked = as_json(fanout(unmigrated, "events", placed[0]["id"], "--json"))
    assert [event["version"] for event in walked] == [1, 2, 3, 4, 5]
    backfilled = as_json(fanout(unmigrated, "backfill", "--sink", "memory", "--json"))
    assert set(backfilled) == {"alpha", "beta"}
    assert sum(result["orders"] for result in backfilled.values()) == 5
    home = next(name for name, shard in shards.items() if shard["customers"] == 1)
    assert as_json(fanout(unmigrated, "dlq", "list", "--database", home, "--json")) == []
    unknown = fanout(unmigrated, "dlq", "list", "--database", "gamma")
    assert unknown.returncode == 1
    assert "no database named 'gamma' (the databases: catalog, alpha, beta)" in unknown.stderr


def test_shard_commands_need_shards(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    env["FANOUT_POSTGRES_URL"] = "postgresql://fanout:fanout@127.0.0.1:1/none"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "shards", "plan"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "postgres.shards: no shards are configured" in result.stderr


async def test_doctor_checks_every_shard(migrated: ShardedDatabases) -> None:
    """``fanout doctor`` reports each shard; with beta's URL naming a port nothing listens
    on, beta is reported down with the reason, alpha still checked, and the exit code is 1."""
    healthy = as_json(fanout(migrated, "doctor", "--json"))
    assert [(shard["name"], shard["ok"]) for shard in healthy["shards"]] == [
        ("alpha", True),
        ("beta", True),
    ]
    gone = f"postgresql://fanout@127.0.0.1:{unused_port()}/gone"
    beta_down = ShardedDatabases(migrated.catalog, {**migrated.shards, "beta": gone})

    result = fanout(beta_down, "doctor", "--json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    shards = {shard["name"]: shard for shard in report["shards"]}
    assert shards["alpha"]["ok"] is True and shards["alpha"]["latency_ms"] > 0
    assert shards["beta"]["ok"] is False
    assert "cannot connect to PostgreSQL" in shards["beta"]["detail"]
    assert report["postgres"]["ok"] is True
    table = fanout(beta_down, "doctor")
    assert table.returncode == 1
    assert "Shard beta: DOWN" in table.stdout and "Shard alpha: ok" in table.stdout
