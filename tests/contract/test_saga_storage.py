"""The saga storage's contract, held against the in-memory storage and PostgreSQL's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway import Gateway
from gateway.write_path.models import Order
from support.sharding import connect_sharded, sharded_databases
from tests.contract.saga_harnesses import MemoryHarness, PostgresHarness, SagaHarness
from tests.contract.saga_storage_contract import SagaStorageContract


class TestInMemorySagaStorage(SagaStorageContract):
    """The storage the simulation drives the saga over."""

    @pytest.fixture
    def harness(self) -> SagaHarness:
        return MemoryHarness()


@pytest.fixture(scope="module")
async def saga_gateway() -> AsyncIterator[Gateway]:
    """A sharded gateway over fresh catalog and shard databases of this module's own."""
    async with sharded_databases() as fresh, await connect_sharded(fresh) as gateway:
        yield gateway


class TestPostgresSagaStorage(SagaStorageContract):
    """The storage the sharded gateway runs over."""

    @pytest.fixture
    async def harness(self, saga_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> SagaHarness:
        async def shard_only(order: Order) -> None:
            """The contract looks at the shard alone: a cancellation's return stays queued
            (the gateway hands it back to the catalog at once, a step of the saga)."""

        monkeypatch.setattr(saga_gateway.sharding, "after_change", shard_only)
        await saga_gateway.pool.execute("TRUNCATE inventory_reservations")
        for pool in saga_gateway.sharding.shards.values():
            await pool.execute("TRUNCATE reservation_decisions, inventory_returns")
        return PostgresHarness(saga_gateway)
