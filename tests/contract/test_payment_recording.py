"""The payment recording contract, held against the simulation's in-memory shard and the
gateway over PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway import Gateway, MigrationRunner, Settings
from gateway.configuration.settings import PostgresSettings
from support.servers import server_url
from tests.contract.payment_harnesses import (
    MemoryPaymentHarness,
    PaymentHarness,
    PostgresPaymentHarness,
)
from tests.contract.payment_recording_contract import PaymentRecordingContract


class TestInMemoryPaymentRecording(PaymentRecordingContract):
    """The recording the simulation drives."""

    @pytest.fixture
    def harness(self) -> PaymentHarness:
        return MemoryPaymentHarness()


@pytest.fixture(scope="module")
async def payment_gateway() -> AsyncIterator[Gateway]:
    """A gateway over a fresh migrated database of this module's own."""
    server = server_url("postgres")
    name = f"fanout_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        connection = await asyncpg.connect(url)
        try:
            await MigrationRunner(connection).apply()
        finally:
            await connection.close()
        async with await Gateway.connect(Settings(postgres=PostgresSettings(url=url))) as gateway:
            yield gateway
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class TestPostgresPaymentRecording(PaymentRecordingContract):
    """The recording the gateway does."""

    @pytest.fixture
    def harness(self, payment_gateway: Gateway) -> PaymentHarness:
        return PostgresPaymentHarness(payment_gateway)
