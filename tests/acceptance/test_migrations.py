"""The migration runner against real, empty PostgreSQL databases."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway import (
    Migration,
    MigrationChecksumMismatch,
    MigrationError,
    MigrationRunner,
    MigrationState,
)
from gateway.postgres.migrations import discover_migrations

GATEWAY_TABLES = {
    "customers",
    "addresses",
    "categories",
    "products",
    "orders",
    "order_items",
    "outbox",
    "idempotency_keys",
    "relay_positions",
    "relay_instances",
    "dead_letters",
    "fanout_schema_migrations",
    "order_events",
    "payments",
    "backfills",
    "console_sessions",
}


@pytest.fixture
async def connection(fresh_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_url)
    yield connection
    await connection.close()


async def tables(connection: asyncpg.Connection) -> set[str]:
    rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def test_a_fresh_database_gets_every_migration_recorded(
    connection: asyncpg.Connection,
) -> None:
    applied = await MigrationRunner(connection).apply()

    shipped = discover_migrations()
    assert [m.version for m in applied] == [m.version for m in shipped]
    assert await tables(connection) == GATEWAY_TABLES
    history = await connection.fetch("SELECT * FROM fanout_schema_migrations ORDER BY version")
    assert [(r["version"], r["name"], r["checksum"]) for r in history] == [
        (m.version, m.name, m.checksum) for m in shipped
    ]


async def test_applying_again_is_a_no_op(connection: asyncpg.Connection) -> None:
    await MigrationRunner(connection).apply()
    before = await connection.fetch("SELECT * FROM fanout_schema_migrations ORDER BY version")
    assert await MigrationRunner(connection).apply() == []
    assert (
        await connection.fetch("SELECT * FROM fanout_schema_migrations ORDER BY version") == before
    )


async def test_concurrent_runners_apply_each_migration_once(fresh_url: str) -> None:
    connections = [await asyncpg.connect(fresh_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(MigrationRunner(c).apply() for c in connections))
    finally:
        for c in connections:
            await c.close()

    applied = [m.version for result in results for m in result]
    assert sorted(applied) == [m.version for m in discover_migrations()]


async def test_a_changed_applied_file_stops_every_operation(
    connection: asyncpg.Connection,
) -> None:
    first, second = discover_migrations()[:2]
    await MigrationRunner(connection, [first]).apply()
    tampered = dataclasses.replace(first, up_sql=first.up_sql + "\n-- edited\n")

    with pytest.raises(MigrationChecksumMismatch) as raised:
        await MigrationRunner(connection, [tampered, second]).apply()
    assert "0001_commerce_schema" in str(raised.value)
    assert "outbox" not in await tables(connection)
    with pytest.raises(MigrationChecksumMismatch):
        await MigrationRunner(connection, [tampered]).rollback(1)
    statuses = await MigrationRunner(connection, [tampered, second]).status()
    assert [s.state for s in statuses] == [MigrationState.CHANGED, MigrationState.PENDING]


async def test_down_rolls_back_the_newest_migrations(connection: asyncpg.Connection) -> None:
    runner = MigrationRunner(connection)
    await runner.apply()

    undone = await runner.rollback(12)
    assert [m.name for m in undone] == [
        "outbox_pending_function",
        "console_sessions",
        "relay_sessions",
        "relay_stalled_sinks",
        "outbox_by_aggregate",
        "backfills",
        "order_history_and_payments",
        "customer_orders_keyset",
        "outbox_backlog_function",
        "outbox_batch_function",
        "relay",
        "outbox_and_idempotency",
    ]
    gone = {"outbox", "idempotency_keys", "dead_letters", "order_events", "payments", "backfills"}
    assert "console_sessions" not in await tables(connection)
    assert gone.isdisjoint(await tables(connection))
    assert await connection.fetchval("SELECT to_regproc('outbox_batch')") is None
    assert await connection.fetchval("SELECT to_regproc('outbox_backlog')") is None
    assert await connection.fetchval("SELECT to_regproc('outbox_pending')") is None
    assert "orders" in await tables(connection)
    indexes = await connection.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")
    assert "orders_customer_id_created_at" in {row["indexname"] for row in indexes}
    columns = await connection.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
    )
    assert {"payment_status", "payment_due_at"}.isdisjoint(row["column_name"] for row in columns)

    await runner.rollback(1)
    assert await tables(connection) == {"fanout_schema_migrations"}
    assert all(s.state is MigrationState.PENDING for s in await runner.status())

    assert len(await runner.apply()) == len(discover_migrations())
    assert await tables(connection) == GATEWAY_TABLES


async def test_down_refuses_without_a_down_script_or_enough_migrations(
    connection: asyncpg.Connection,
) -> None:
    first = discover_migrations()[0]
    oneway = Migration(2, "one_way", "CREATE TABLE one_way (id int)")
    runner = MigrationRunner(connection, [first, oneway])
    await runner.apply()

    with pytest.raises(MigrationError, match="no down script"):
        await runner.rollback(2)
    assert {"one_way", "orders"} <= await tables(connection)
    with pytest.raises(MigrationError, match="only 2 are applied"):
        await runner.rollback(3)


async def test_a_failing_migration_leaves_the_earlier_ones_applied(
    connection: asyncpg.Connection,
) -> None:
    first = discover_migrations()[0]
    broken = Migration(2, "broken", "CREATE TABLE half_done (id int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await MigrationRunner(connection, [first, broken]).apply()

    statuses = await MigrationRunner(connection, [first, broken]).status()
    assert [s.state for s in statuses] == [MigrationState.APPLIED, MigrationState.PENDING]
    assert "half_done" not in await tables(connection)


async def test_a_database_ahead_of_the_code_is_refused(connection: asyncpg.Connection) -> None:
    await MigrationRunner(connection).apply()
    with pytest.raises(MigrationError, match="does not know"):
        await MigrationRunner(connection, discover_migrations()[:1]).apply()
    statuses = await MigrationRunner(connection, discover_migrations()[:1]).status()
    assert statuses[-1].state is MigrationState.UNKNOWN


def fanout(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FANOUT_POSTGRES_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True
    )


async def test_the_cli_applies_reports_and_rolls_back(fresh_url: str) -> None:
    migrations = discover_migrations()
    last = migrations[-1].label
    applied = fanout(fresh_url, "migrate")
    assert applied.returncode == 0, applied.stderr
    assert f"applied {last}" in applied.stdout
    assert "up to date" in fanout(fresh_url, "migrate").stdout

    status = fanout(fresh_url, "migrate", "status", "--json")
    assert [row["state"] for row in json.loads(status.stdout)] == ["applied"] * len(migrations)

    down = fanout(fresh_url, "migrate", "down", "1")
    assert down.returncode == 0, down.stderr
    assert f"rolled back {last}" in down.stdout
    status = fanout(fresh_url, "migrate", "status", "--json")
    states = [row["state"] for row in json.loads(status.stdout)]
    assert states == ["applied"] * (len(migrations) - 1) + ["pending"]


async def test_the_cli_creates_a_missing_database(postgres_server: str) -> None:
    from support.databases import database_url

    name = "fanout_cli_created"
    url = database_url(postgres_server, name)
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        result = fanout(url, "migrate", "--create-database")
        assert result.returncode == 0, result.stderr
        assert "created the database" in result.stdout
        assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_wrong_password_is_a_clear_error_that_hides_the_password(
    postgres_server: str,
) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_server)
    url = f"postgresql://{parts.username}:Sup3rSecret@{parts.hostname}:{parts.port}/postgres"
    result = fanout(url, "migrate", "status")
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "Sup3rSecret" not in result.stderr + result.stdout
