"""The :class:`Gateway`: the write path's public entry point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

import asyncpg

from gateway.configuration.settings import Settings, load_settings
from gateway.errors import GatewayError, ValidationError
from gateway.postgres import outbox
from gateway.postgres.database import Connection, create_pool
from gateway.write_path import catalog, customers, idempotency, orders
from gateway.write_path.models import (
    Address,
    AddressRequest,
    Category,
    CategoryRequest,
    Customer,
    CustomerRequest,
    Event,
    Order,
    PlaceOrderRequest,
    Product,
    ProductRequest,
)
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.pricing import PricingPolicy
from gateway.write_path.validation import parse

PLACE_ORDER_SCOPE = "place_order"


@dataclass(frozen=True)
class PlacedOrder:
    """The outcome of :meth:`Gateway.place_order_once`."""

    order: Order
    replayed: bool


class Gateway:
    """Writes orders to PostgreSQL and appends their events to the outbox atomically.

    Create it with ``await Gateway.connect(settings)`` and release it with ``await close()``,
    or use it as an async context manager. Every write runs in one transaction: when a method
    raises, nothing it did is kept.
    """

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._pricing = PricingPolicy.from_settings(settings.pricing)

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> Self:
        """Open a pool to the configured database (default: :func:`load_settings`)."""
        settings = settings if settings is not None else load_settings()
        return cls(await create_pool(settings.postgres), settings)

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool, for callers that write their own rows next to events."""
        return self._pool

    @property
    def settings(self) -> Settings:
        """The settings this gateway runs with."""
        return self._settings

    async def close(self) -> None:
        """Close the pool, waiting for connections in use to be released."""
        await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def place_order(
        self,
        request: PlaceOrderRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Order:
        """Create an order, take its units from inventory and append ``order.placed``.

        With an ``idempotency_key``, a repeat of the same request returns the same order (as it
        is now) and appends nothing; the same key with a different request raises
        ``IdempotencyConflict``. Keys are kept for ``idempotency.retention_seconds``.
        """
        placed = await self._place(request, idempotency_key)
        return placed.order

    async def place_order_once(
        self, request: PlaceOrderRequest | Mapping[str, Any], *, idempotency_key: str
    ) -> PlacedOrder:
        """Like :meth:`place_order` with a key, and say whether the order was created now.

        ``PlacedOrder.replayed`` is true when the key was already used for the same request:
        nothing was written and ``order`` is that earlier order as it is now.
        """
        return await self._place(request, idempotency_key)

    async def _place(
        self, request: PlaceOrderRequest | Mapping[str, Any], idempotency_key: str | None
    ) -> PlacedOrder:
        order_request = parse(PlaceOrderRequest, request)
        self._check_order_limits(order_request)
        key = idempotency.validate_key(idempotency_key) if idempotency_key is not None else None
        fingerprint = idempotency.request_fingerprint(order_request) if key else ""
        order_id = uuid4()
        async with self._pool.acquire() as connection, connection.transaction():
            if key is not None:
                existing = await idempotency.claim(
                    connection,
                    PLACE_ORDER_SCOPE,
                    key,
                    fingerprint,
                    order_id,
                    self._settings.idempotency.retention_seconds,
                )
                if existing is not None:
                    return PlacedOrder(await orders.fetch_order(connection, existing), True)
            order, customer = await orders.insert_order(
                connection,
                order_id,
                order_request,
                self._pricing,
                self._settings.orders.number_prefix,
            )
            headers = {"idempotency_key": key} if key is not None else None
            event = orders.order_event(order, orders.ORDER_PLACED, customer, headers=headers)
            await outbox.append(connection, [event])
        return PlacedOrder(order, False)

    async def transition(
        self,
        order_id: UUID | str,
        new_status: OrderStatus | str,
        *,
        expected_version: int | None = None,
    ) -> Order:
        """Move an order to ``new_status``, bump its version and append ``order.status_changed``.

        Raises ``IllegalTransition`` when the state machine forbids the move, and
        ``VersionConflict`` when ``expected_version`` is given and is not the current one.
        Cancelling an order returns its units to inventory.
        """
        target_id = _uuid(order_id, "order_id")
        target = _status(new_status)
        if expected_version is not None and expected_version < 1:
            raise ValidationError.single("expected_version", "must be at least 1")
        async with self._pool.acquire() as connection, connection.transaction():
            order, previous, customer = await orders.change_status(
                connection, target_id, target, expected_version
            )
            event = orders.order_event(
                order, orders.ORDER_STATUS_CHANGED, customer, previous_status=previous
            )
            await outbox.append(connection, [event])
        return order

    async def get_order(self, order_id: UUID | str) -> Order:
        """The order as PostgreSQL holds it now; ``NotFound`` if there is none."""
        target_id = _uuid(order_id, "order_id")
        async with self._pool.acquire() as connection:
            return await orders.fetch_order(connection, target_id)

    async def publish(self, connection: Connection, events: Event | Sequence[Event]) -> None:
        """Append events inside the caller's open transaction on ``connection``.

        The events commit or roll back with the caller's own writes. Publishing outside a
        transaction is refused, since it would break that atomicity.
        """
        if not connection.is_in_transaction():
            raise GatewayError("publish needs a connection inside an open transaction")
        batch = [events] if isinstance(events, Event) else list(events)
        await outbox.append(connection, batch)

    async def create_customer(self, request: CustomerRequest | Mapping[str, Any]) -> Customer:
        """Create a customer (and its addresses) and append ``customer.created``."""
        customer_request = parse(CustomerRequest, request)
        async with self._pool.acquire() as connection, connection.transaction():
            customer = await customers.insert_customer(connection, customer_request)
            await outbox.append(connection, [customers.customer_event(customer)])
        return customer

    async def add_address(
        self, customer_id: UUID | str, request: AddressRequest | Mapping[str, Any]
    ) -> Address:
        """Add a billing or shipping address to a customer."""
        target_id = _uuid(customer_id, "customer_id")
        address_request = parse(AddressRequest, request)
        async with self._pool.acquire() as connection, connection.transaction():
            return await customers.insert_address(connection, target_id, address_request)

    async def create_category(self, request: CategoryRequest | Mapping[str, Any]) -> Category:
        """Create a product category."""
        category_request = parse(CategoryRequest, request)
        async with self._pool.acquire() as connection, connection.transaction():
            return await catalog.insert_category(connection, category_request)

    async def create_product(self, request: ProductRequest | Mapping[str, Any]) -> Product:
        """Create a product with its price and initial stock."""
        product_request = parse(ProductRequest, request)
        async with self._pool.acquire() as connection, connection.transaction():
            return await catalog.insert_product(connection, product_request)

    async def purge_expired_idempotency_keys(self) -> int:
        """Forget idempotency keys older than the retention; return how many were removed."""
        async with self._pool.acquire() as connection:
            return await idempotency.purge_expired(connection)

    def _check_order_limits(self, request: PlaceOrderRequest) -> None:
        limits = self._settings.orders
        if len(request.items) > limits.max_items:
            raise ValidationError.single("items", f"at most {limits.max_items} items per order")
        for index, item in enumerate(request.items):
            if item.quantity > limits.max_quantity:
                raise ValidationError.single(
                    f"items[{index}].quantity", f"must be at most {limits.max_quantity}"
                )


def _uuid(value: UUID | str, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError.single(field, f"{value!r} is not a valid UUID") from None


def _status(value: OrderStatus | str) -> OrderStatus:
    try:
        return OrderStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in OrderStatus)
        raise ValidationError.single("status", f"{value!r} is not one of {allowed}") from None
