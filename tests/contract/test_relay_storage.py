"""The relay storage's contract, held against the in-memory storage and PostgreSQL's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.configuration.settings import PostgresSettings
from gateway.postgres.database import create_pool
from gateway.postgres.server_runs import ServerRuns
from gateway.relay.tables import DeadLetter, Move
from support.servers import server_url
from tests.acceptance.conftest import create_database, create_migrated_database, postgres_server
from tests.contract.harnesses import Harness, MemoryHarness, PostgresHarness
from tests.contract.relay_storage_contract import RelayStorageContract, held_event

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
        runs = ServerRuns()
        async with contract_pool.acquire() as connection:
            await runs.observe(connection)
        return PostgresHarness(contract_pool, runs, server_url("postgres-shard-a"))

    async def test_a_batch_read_on_another_server_is_refused_by_the_one_committing(
        self, harness: PostgresHarness
    ) -> None:
        """The commit itself checks the run: a pool that counted another server's run (the
        next primary) refuses to commit there what a connection to this one would commit."""
        held = await held_event(harness)
        sink, owner, event, start = held.sink, held.owner, held.event, held.start
        p = event.partition
        other = await asyncpg.connect(server_url("postgres-shard-a"))
        try:
            await harness.runs.observe(other)  # the counter now names the other server's run
        finally:
            await other.close()
        moves = {p: Move(event.position, 1, since=start)}
        letter = DeadLetter(event, "attempts_exhausted", "boom", 3)
        read_there = harness.storage.server_changes()
        assert not await harness.storage.commit_batch(sink, owner, moves, [], server=read_there)
        assert not await harness.storage.commit_batch(sink, owner, {}, [letter], server=read_there)
        assert await harness.storage.positions(sink, [p]) == {p: start}
        assert await harness.dead_letter_attempts(sink) == {}
