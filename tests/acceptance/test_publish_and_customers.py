"""publish inside the caller's transaction, NOTIFY on commit, and customers."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from gateway import AlreadyExists, Event, Gateway, GatewayError, ValidationError
from gateway.postgres.outbox import CHANNEL
from support.shop import Shop


def shipment_event(aggregate_id: str) -> Event:
    return Event(
        aggregate_type="shipment",
        aggregate_id=aggregate_id,
        event_type="shipment.created",
        payload={"carrier": "ACME"},
        headers={"trace_id": "abc"},
    )


async def test_published_events_commit_with_the_callers_rows(gateway: Gateway) -> None:
    await gateway.pool.execute("CREATE TABLE IF NOT EXISTS shipments (id text PRIMARY KEY)")
    shipment_id = str(uuid.uuid4())
    async with gateway.pool.acquire() as connection, connection.transaction():
        await connection.execute("INSERT INTO shipments VALUES ($1)", shipment_id)
        await gateway.publish(connection, shipment_event(shipment_id))

    row = await gateway.pool.fetchrow("SELECT * FROM outbox WHERE aggregate_id = $1", shipment_id)
    assert row is not None
    assert row["event_type"] == "shipment.created"
    assert row["payload"] == {"carrier": "ACME"}
    assert row["headers"] == {"trace_id": "abc"}


async def test_published_events_roll_back_with_the_callers_rows(gateway: Gateway) -> None:
    await gateway.pool.execute("CREATE TABLE IF NOT EXISTS shipments (id text PRIMARY KEY)")
    shipment_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError):
        async with gateway.pool.acquire() as connection, connection.transaction():
            await connection.execute("INSERT INTO shipments VALUES ($1)", shipment_id)
            await gateway.publish(connection, [shipment_event(shipment_id)])
            raise RuntimeError("the caller's own work failed")

    assert (
        await gateway.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE aggregate_id = $1", shipment_id
        )
        == 0
    )
    assert (
        await gateway.pool.fetchval("SELECT count(*) FROM shipments WHERE id = $1", shipment_id)
        == 0
    )


async def test_publish_outside_a_transaction_is_refused(gateway: Gateway) -> None:
    async with gateway.pool.acquire() as connection:
        with pytest.raises(GatewayError, match="open transaction"):
            await gateway.publish(connection, shipment_event("s-1"))


async def test_a_commit_notifies_the_outbox_channel(gateway: Gateway, shop: Shop) -> None:
    listener = await asyncpg.connect(gateway.settings.postgres.url.get_secret_value())
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(CHANNEL, lambda *args: received.put_nowait(args[2]))
    try:
        customer = await shop.customer()
        await asyncio.wait_for(received.get(), timeout=10)
        product = await shop.product()
        await gateway.place_order(shop.order(customer, (product, 1)))
        await asyncio.wait_for(received.get(), timeout=10)
    finally:
        await listener.close()


async def test_create_customer_appends_customer_created(shop: Shop) -> None:
    customer = await shop.customer()
    [event] = await shop.events_of(customer.id)
    assert event["event_type"] == "customer.created"
    assert event["payload"]["email"] == customer.email
    assert len(event["payload"]["addresses"]) == 2


async def test_a_duplicate_email_is_refused_and_writes_nothing(shop: Shop) -> None:
    customer = await shop.customer()
    before = await shop.counts()
    with pytest.raises(AlreadyExists) as raised:
        await shop.gateway.create_customer(
            {"email": customer.email, "first_name": "Again", "last_name": "Again"}
        )
    assert raised.value.field == "email"
    assert await shop.counts() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"phone": "call me"}, "phone"),
        ({"first_name": ""}, "first_name"),
        ({"addresses": [{"address_type": "office"}]}, "addresses[0].address_type"),
    ],
)
async def test_invalid_customers_name_the_field(
    gateway: Gateway, change: dict[str, object], field: str
) -> None:
    request = {"email": f"c-{uuid.uuid4().hex}@example.com", "first_name": "A", "last_name": "B"}
    with pytest.raises(ValidationError) as raised:
        await gateway.create_customer({**request, **change})
    assert raised.value.field == field


async def test_a_new_default_address_replaces_the_previous_default_of_its_type(
    shop: Shop,
) -> None:
    customer = await shop.customer()
    address = {
        "address_type": "billing",
        "street_address": "2 Side St",
        "city": "Shelbyville",
        "postal_code": "999",
        "is_default": True,
    }
    added = await shop.gateway.add_address(customer.id, address)
    other = await shop.gateway.add_address(customer.id, {**address, "is_default": False})
    defaults = await shop.gateway.pool.fetch(
        "SELECT id, address_type FROM addresses WHERE customer_id = $1 AND is_default",
        customer.id,
    )
    assert {(row["id"], row["address_type"]) for row in defaults} == {
        (added.id, "billing"),
        (customer.addresses[1].id, "shipping"),
    }
    assert not other.is_default
