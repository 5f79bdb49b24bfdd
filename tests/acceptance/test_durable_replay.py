"""A placement answered from its idempotency key waits, as a new one does, for a synchronous
standby to hold what it answers with: the replay commits a transaction that writes WAL."""

from __future__ import annotations

from gateway import Gateway
from gateway.postgres.database import wait_until_durable


async def next_transaction_id(gateway: Gateway) -> int:
    async with gateway.pool.acquire() as connection:
        xmax: int = await connection.fetchval(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        )
    return xmax


async def test_waiting_until_durable_commits_a_transaction_that_writes_wal(
    gateway: Gateway,
) -> None:
    before = await next_transaction_id(gateway)
    async with gateway.pool.acquire() as connection:
        await wait_until_durable(connection)
        assert not connection.is_in_transaction()
    assert await next_transaction_id(gateway) > before
