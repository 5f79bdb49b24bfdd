"""The HTTP API's acceptance tests of one database, run again with ``fanout serve`` in sharded
mode (the catalog and two shards on three servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway import Gateway
from tests.acceptance.api_process import ApiServer, api_server, write_config
from tests.acceptance.sharding_support import ShardedDatabases, connect_sharded, sharded_databases
from tests.acceptance.shop import Shop

# Collected again here, over this module's sharded server and gateway.
from tests.acceptance.test_http_api import (  # noqa: F401
    API_KEY,
    MAX_BODY,
    client,
    customer,
    product,
    test_bad_bodies_get_a_problem_and_write_nothing,
    test_customers_are_created_and_duplicates_conflict,
    test_get_order_answers_404_and_422,
    test_place_order_creates_then_replays_then_conflicts,
    test_the_idempotency_key_is_required_and_checked,
    test_transitions_check_the_version_and_the_state_machine,
)


@pytest.fixture(scope="module")
async def sharded() -> AsyncIterator[ShardedDatabases]:
    async with sharded_databases() as found:
        yield found


@pytest.fixture(scope="module")
async def server(
    sharded: ShardedDatabases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """``fanout serve`` over the catalog and two shards."""
    config = write_config(
        tmp_path_factory.mktemp("sharded-api"),
        {
            "postgres": {
                "url": sharded.catalog,
                "shards": {name: {"url": url} for name, url in sharded.shards.items()},
            },
            "api": {"key": API_KEY, "max_body_bytes": MAX_BODY},
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    async with api_server(config) as running:
        yield running


@pytest.fixture(scope="module")
async def gateway(sharded: ShardedDatabases) -> AsyncIterator[Gateway]:
    async with await connect_sharded(sharded) as connected:
        yield connected


@pytest.fixture
def shop(gateway: Gateway) -> Shop:
    return Shop(gateway)
