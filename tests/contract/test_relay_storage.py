"""The relay storage's contract, held against the in-memory storage and PostgreSQL's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.configuration.settings import PostgresSettings
from gateway.postgres.database import create_pool
from tests.acceptance.conftest import create_database, create_migrated_database, postgres_server
from tests.contract.harnesses import Harness, MemoryHarness, PostgresHarness
from tests.contract.relay_storage_contract import RelayStorageContract

__all__ = ["create_database", "postgres_server"]  # fixtures, used by name


class TestInMemoryRelayStorage(RelayStorageContract):
    """The storage the unit tests and the simulation drive the relay over."""

    @pytest.fixture
    def harness(self) -> Harness:
        return MemoryHarness()


@pytest.fixture(scope="session")
async def contract_pool(create_database: object) -> AsyncIterator[asyncpg.Pool]:
    """A pool over a migrated database of the contract suite's own."""
    url = await create_migrated_database(create_database)  # type: ignore[arg-type]
    pool = await create_pool(PostgresSettings(url=url, pool_max_size=10))
    yield pool
    await pool.close()


class TestPostgresRelayStorage(RelayStorageContract):
    """The storage the relay runs over in production."""

    @pytest.fixture
    async def harness(self, contract_pool: asyncpg.Pool) -> Harness:
        await contract_pool.execute(
            "TRUNCATE outbox, relay_positions, relay_instances, dead_letters RESTART IDENTITY"
            " CASCADE"
        )
        return PostgresHarness(contract_pool)
