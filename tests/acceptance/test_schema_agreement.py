"""The numbers and names that the schema and the code must agree on, checked against a real
PostgreSQL: the partition count, the batch read's columns."""

from __future__ import annotations

import re

import asyncpg
import pytest

from gateway.errors import GatewayError
from gateway.postgres import outbox
from gateway.postgres.queries import query
from gateway.relay import tables
from tests.acceptance.relay_support import World


async def test_the_schema_spreads_events_over_the_partition_count_the_relay_leases(
    migrated_url: str,
) -> None:
    connection = await asyncpg.connect(migrated_url)
    try:
        generated = await connection.fetchval(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d"
            " JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
            " WHERE d.adrelid = 'outbox'::regclass AND a.attname = 'partition'"
        )
        check = await connection.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'relay_positions_partition_range'"
        )
    finally:
        await connection.close()
    assert re.search(rf"% {outbox.PARTITION_COUNT}\)*$", generated), generated
    assert re.search(rf">= 0\) AND \(partition <= {outbox.PARTITION_COUNT - 1}\)", check), check
    assert tuple(range(outbox.PARTITION_COUNT)) == outbox.PARTITIONS


async def test_a_new_sink_gets_a_position_in_every_partition(world: World) -> None:
    async with world.gateway.pool.acquire() as connection:
        await tables.register_sink(connection, "counted", from_beginning=True)
        partitions = await connection.fetch(
            "SELECT partition FROM relay_positions WHERE sink = 'counted' ORDER BY partition"
        )
    assert [row["partition"] for row in partitions] == list(outbox.PARTITIONS)


async def test_the_batch_query_returns_the_columns_events_are_built_from(
    migrated_url: str,
) -> None:
    connection = await asyncpg.connect(migrated_url)
    try:
        statement = await connection.prepare(query("read_outbox_batch"))
        columns = tuple(attribute.name for attribute in statement.get_attributes())
    finally:
        await connection.close()
    assert columns == outbox.BATCH_COLUMNS


def test_columns_in_another_order_are_refused_not_built_into_wrong_events() -> None:
    reordered = list(outbox.BATCH_COLUMNS)
    reordered[3], reordered[4] = reordered[4], reordered[3]
    with pytest.raises(GatewayError, match="the outbox batch query returns the columns"):
        outbox.check_batch_columns(tuple(reordered))
    outbox.check_batch_columns(outbox.BATCH_COLUMNS)
