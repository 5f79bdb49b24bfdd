"""Idempotency keys of place_order against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway import IdempotencyConflict, InsufficientInventory, ValidationError
from gateway.write_path import idempotency
from support.shop import Shop


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


async def test_the_same_key_and_request_return_the_first_order(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=10)
    request, key = shop.order(customer, (product, 1)), new_key()

    first = await shop.gateway.place_order(request, idempotency_key=key)
    before = await shop.counts()
    again = await shop.gateway.place_order(dict(reversed(request.items())), idempotency_key=key)

    assert again == first
    assert await shop.counts() == before
    assert len(await shop.events_of(first.id)) == 1
    assert await shop.stock(product) == 9


async def test_the_same_key_with_another_request_is_a_conflict(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=10)
    key = new_key()
    await shop.gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    before = await shop.counts()

    with pytest.raises(IdempotencyConflict) as raised:
        await shop.gateway.place_order(shop.order(customer, (product, 2)), idempotency_key=key)

    assert raised.value.key == key
    assert await shop.counts() == before


async def test_fifty_concurrent_requests_with_one_key_create_one_order(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=100)
    request, key = shop.order(customer, (product, 1)), new_key()
    before = await shop.counts()

    orders = await asyncio.gather(
        *(shop.gateway.place_order(request, idempotency_key=key) for _ in range(50))
    )

    assert len({order.id for order in orders}) == 1
    after = await shop.counts()
    assert after.orders == before.orders + 1
    assert after.outbox == before.outbox + 1
    assert await shop.stock(product) == 99


async def test_a_failed_request_does_not_use_up_its_key(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=1)
    request, key = shop.order(customer, (product, 2)), new_key()

    with pytest.raises(InsufficientInventory):
        await shop.gateway.place_order(request, idempotency_key=key)
    await shop.gateway.pool.execute(
        "UPDATE products SET inventory_quantity = 5 WHERE id = $1", product.id
    )
    order = await shop.gateway.place_order(request, idempotency_key=key)

    assert order.items[0].quantity == 2


async def test_an_expired_key_can_be_reused_and_is_purged(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product(stock=10)
    key = new_key()
    first = await shop.gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    # Stands in for the retention passing: the row's expiry is moved into the past.
    await shop.gateway.pool.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1", key
    )

    second = await shop.gateway.place_order(shop.order(customer, (product, 2)), idempotency_key=key)
    assert second.id != first.id

    await shop.gateway.pool.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1", key
    )
    assert await shop.gateway.purge_expired_idempotency_keys() >= 1
    remaining = await shop.gateway.pool.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE key = $1", key
    )
    assert remaining == 0


async def test_keys_expire_after_the_configured_retention(shop: Shop) -> None:
    customer = await shop.customer()
    product = await shop.product()
    key = new_key()
    await shop.gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    seconds = await shop.gateway.pool.fetchval(
        "SELECT extract(epoch FROM expires_at - created_at) FROM idempotency_keys WHERE key = $1",
        key,
    )
    assert seconds == shop.gateway.settings.idempotency.retention_seconds


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_malformed_keys_are_rejected(shop: Shop, key: str) -> None:
    customer = await shop.customer()
    product = await shop.product()
    with pytest.raises(ValidationError) as raised:
        await shop.gateway.place_order(shop.order(customer, (product, 1)), idempotency_key=key)
    assert raised.value.field == "idempotency_key"


async def test_a_key_purged_after_a_failed_claim_is_claimed_by_the_holder_lookup(
    shop: Shop,
) -> None:
    # The window between a claim that found the key taken and the lookup of its holder: if
    # the key expired and was purged meanwhile, the lookup claims it for the new resource.
    wanted = idempotency.KeyClaim("unit-scope", new_key(), "a" * 64, 60)
    resource = uuid.uuid4()
    async with shop.gateway.pool.acquire() as connection, connection.transaction():
        assert await idempotency.holder(connection, wanted, resource) is None
        assert await idempotency.holder(connection, wanted, uuid.uuid4()) == resource
        other = idempotency.KeyClaim(wanted.scope, wanted.key, "b" * 64, 60)
        with pytest.raises(IdempotencyConflict):
            await idempotency.holder(connection, other, uuid.uuid4())
