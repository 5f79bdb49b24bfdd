"""The write-path benchmark's one-round-trip baseline writes what ``place_order`` writes.

``bench_place_order`` (bench/sql/place_order_function.sql) is what the gateway's placement is
measured against; it is an honest baseline only if it does the same work: the same rows in
every table, the same units taken and the same wake-up of relays.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from bench.write_path import create_place_order_function, place_server_side
from gateway import PlaceOrderRequest
from gateway.postgres.database import Connection
from gateway.write_path.validation import parse
from support.eventually import eventually
from tests.acceptance.relay_support import World

# Columns that differ between any two orders (their ids, numbers and times), left aside.
ORDER_ASIDE = {"id", "order_number", "created_at", "updated_at", "payment_due_at"}
ITEM_ASIDE = {"id", "order_id", "created_at"}
OUTBOX_ASIDE = {"id", "event_id", "txid", "aggregate_id", "occurred_at", "partition"}


def _without(row: asyncpg.Record | dict[str, Any], aside: set[str]) -> dict[str, Any]:
    return {key: value for key, value in dict(row).items() if key not in aside}


def _payload_without_ids(payload: dict[str, Any]) -> dict[str, Any]:
    order = _without(payload, ORDER_ASIDE | {"items"})
    order["items"] = sorted(
        (_without(item, {"id"}) for item in payload["items"]), key=lambda i: i["product_id"]
    )
    return order


async def _written(connection: Connection, order_id: uuid.UUID) -> dict[str, Any]:
    """Every row written for the order, ids and times aside."""
    order = await connection.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
    items = await connection.fetch(
        "SELECT * FROM order_items WHERE order_id = $1 ORDER BY product_id", order_id
    )
    key = await connection.fetchrow(
        "SELECT scope, request_hash, expires_at - created_at AS kept FROM idempotency_keys"
        " WHERE resource_id = $1",
        order_id,
    )
    [event] = await connection.fetch("SELECT * FROM outbox WHERE aggregate_id = $1", str(order_id))
    [stream] = await connection.fetch("SELECT * FROM order_events WHERE stream_id = $1", order_id)
    assert order is not None and key is not None
    assert order["order_number"].startswith("ORD-")
    assert event["payload"]["id"] == str(order_id)
    assert event["headers"].keys() == {"idempotency_key"}
    assert (stream["event_id"], stream["payload"]) == (event["event_id"], event["payload"])
    return {
        "order": _without(order, ORDER_ASIDE),
        "items": [_without(item, ITEM_ASIDE) for item in items],
        "key": dict(key),
        "event": _without(event, OUTBOX_ASIDE | {"payload", "headers"}),
        "payload": _payload_without_ids(event["payload"]),
        "stream": _without(stream, {"stream_id", "event_id", "occurred_at", "payload", "headers"}),
    }


async def test_the_server_side_placement_writes_what_place_order_writes(world: World) -> None:
    shop, gateway = world.shop, world.gateway
    customer = await shop.customer()
    mug, plate = await shop.product("12.50", stock=10), await shop.product("3.35", stock=9)
    request = parse(
        PlaceOrderRequest,
        shop.order(customer, (mug, 2), (plate, 3), customer_segment="vip", metadata={"a": 1}),
    )
    notified: list[str] = []
    async with gateway.pool.acquire() as connection:
        await create_place_order_function(connection)
        listener = await asyncpg.connect(world.settings.postgres.url.get_secret_value())
        await listener.add_listener("fanout_outbox", lambda *args: notified.append(args[2]))
        try:
            placed = await gateway.place_order(request, idempotency_key="by-the-gateway")
            await eventually(lambda: len(notified) == 1, within=30)
            server_side = await place_server_side(connection, gateway, request, "by-the-server")
            await eventually(lambda: len(notified) == 2, within=30)
        finally:
            await listener.close()
        by_gateway = await _written(connection, placed.id)
        by_server = await _written(connection, uuid.UUID(server_side["id"]))

    assert by_server == by_gateway
    assert server_side == _as_event_order(placed.model_dump(mode="json"), server_side)
    assert await shop.stock(mug) == 10 - 2 * 2
    assert await shop.stock(plate) == 9 - 3 * 2


def _as_event_order(gateway_order: dict[str, Any], server_order: dict[str, Any]) -> dict[str, Any]:
    """The gateway's order with the server's ids and times: equal unless another field
    differs."""
    merged = {**gateway_order, **{key: server_order[key] for key in ORDER_ASIDE}}
    items = {item["product_id"]: item for item in server_order["items"]}
    merged["items"] = [
        {**item, "id": items[item["product_id"]]["id"]} for item in gateway_order["items"]
    ]
    merged["items"].sort(key=lambda item: item["id"])
    return merged
