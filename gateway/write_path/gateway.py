"""The :class:`Gateway`: the write path's public entry point."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID, uuid4

import asyncpg

from gateway.configuration.settings import Settings, load_settings
from gateway.errors import GatewayError, ValidationError
from gateway.history import store as history
from gateway.history.store import OrderEvent
from gateway.operations.report import (
    GroupBy,
    OrdersReport,
    ReportRow,
    check_period,
    merge_rows,
    report_rows,
)
from gateway.payments import recording
from gateway.payments.notification import PaymentNotification, RecordedPayment
from gateway.postgres import outbox
from gateway.postgres.database import Connection, create_pool
from gateway.postgres.replicas import (
    ReadRouter,
    ReplicaState,
    consistency_position,
    format_token,
    parse_token,
)
from gateway.sharding.scatter import scatter
from gateway.sharding.topology import SINGLE
from gateway.write_path import catalog, customers, idempotency, orders
from gateway.write_path.lifecycle import ORDER_PLACED
from gateway.write_path.models import (
    Address,
    AddressRequest,
    Category,
    CategoryRequest,
    Customer,
    CustomerRequest,
    Event,
    Order,
    OrderPage,
    PlaceOrderRequest,
    Product,
    ProductRequest,
    StoredRecord,
)
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.pages import (
    DEFAULT_PAGE_SIZE,
    check_page_size,
    decode_cursor,
    encode_cursor,
)
from gateway.write_path.pricing import PricingPolicy
from gateway.write_path.validation import parse

PLACE_ORDER_SCOPE = "place_order"
R = TypeVar("R", bound=StoredRecord)
T = TypeVar("T")


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
        self._reads = ReadRouter(pool, settings.postgres)

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> Gateway:
        """Open a pool to the configured database (default: :func:`load_settings`), and to
        its replicas, if any (a replica that is down is used once it answers).

        With ``postgres.shards``, the gateway is a :class:`~gateway.sharding.gateway.
        ShardedGateway` over the catalog and every shard.
        """
        settings = settings if settings is not None else load_settings()
        if settings.postgres.shards:
            # Imported here: the sharded gateway is built on this module.
            from gateway.sharding.gateway import ShardedGateway

            return await ShardedGateway.open(settings)
        gateway = cls(await create_pool(settings.postgres), settings)
        await gateway._reads.start()
        return gateway

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool, for callers that write their own rows next to events."""
        return self._pool

    @property
    def settings(self) -> Settings:
        """The settings this gateway runs with."""
        return self._settings

    @property
    def replicas(self) -> list[ReplicaState]:
        """Each configured replica's state, as last checked."""
        return self._reads.states

    async def close(self) -> None:
        """Close the pools, waiting for connections in use to be released."""
        await self._reads.close()
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
        order_request, claim = self._parse_placement(request, idempotency_key)
        order_id = uuid4()
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                placed = await self._insert_placed(connection, order_id, order_request, claim)
            return PlacedOrder(await self._committed(connection, placed.order), placed.replayed)

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
        pool = await self._order_pool(target_id)
        async with pool.acquire() as connection:
            async with connection.transaction():
                change = await orders.change_status(connection, target_id, target, expected_version)
                await outbox.append_order_events(connection, change.events)
            order = await self._committed(connection, change.order)
        await self._after_change(order)
        return order

    async def record_payment(
        self, notification: PaymentNotification | Mapping[str, Any]
    ) -> RecordedPayment:
        """Record a payment provider's notification and apply it to its order.

        A succeeded payment of the order's amount and currency confirms a pending order
        (``payment.processed``, ``order.confirmed``); a failed one cancels it and returns its
        units (``payment.failed``, ``inventory.released``, ``order.cancelled``). A payment for
        an order that can no longer take it is recorded and flagged for refund, one of another
        amount or currency is recorded as a mismatch. The same ``payment_id`` again writes
        nothing and returns what the first delivery did; with other content it raises
        ``Conflict``. ``NotFound`` if the order does not exist.
        """
        parsed = parse(PaymentNotification, notification)
        pool = await self._order_pool(parsed.order_id)
        async with pool.acquire() as connection:
            async with connection.transaction():
                outcome, change = await recording.record_payment(connection, parsed)
                if change is not None:
                    await outbox.append_order_events(connection, change.events)
                    order = change.order
                else:
                    order = await orders.fetch_order(connection, parsed.order_id)
            order = await self._committed(connection, order)
        await self._after_change(order)
        return RecordedPayment(parsed.payment_id, outcome, change is None, order)

    async def order_events(
        self, order_id: UUID | str, *, consistency_token: str | None = None
    ) -> list[OrderEvent]:
        """The order's events in version order, its whole history (read like
        :meth:`get_order`); ``NotFound`` if there is no such order."""
        target_id = _uuid(order_id, "order_id")
        token = _token(consistency_token)

        async def read(connection: Connection) -> list[OrderEvent]:
            return await history.read_stream(connection, target_id)

        return await self._read(await self._order_pool(target_id), read, token)

    async def get_order(
        self, order_id: UUID | str, *, consistency_token: str | None = None
    ) -> Order:
        """The order; ``NotFound`` if there is none.

        Read from a replica when replicas are configured: with the ``consistency_token`` of
        a write, from one that has that write, else from the primary.
        """
        target_id = _uuid(order_id, "order_id")
        token = _token(consistency_token)

        async def read(connection: Connection) -> Order:
            return await orders.fetch_order(connection, target_id)

        return await self._read(await self._order_pool(target_id), read, token)

    async def customer_orders(
        self,
        customer_id: UUID | str,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        before: str | None = None,
        consistency_token: str | None = None,
    ) -> OrderPage:
        """A page of the customer's orders, newest first, read like :meth:`get_order`.

        ``before`` is the ``next_cursor`` of the previous page; ``limit`` is at most
        :data:`~gateway.write_path.pages.MAX_PAGE_SIZE`. ``NotFound`` if there is no such
        customer.
        """
        target_id = _uuid(customer_id, "customer_id")
        check_page_size(limit)
        after = decode_cursor(before) if before is not None else None
        token = _token(consistency_token)

        async def read(connection: Connection) -> list[Order]:
            return await orders.customer_orders(connection, target_id, limit + 1, after)

        found = await self._read(await self._customer_pool(target_id), read, token)
        page = found[:limit]
        last = page[-1] if len(found) > limit else None
        next_cursor = encode_cursor(last.created_at, last.id) if last is not None else None
        return OrderPage(orders=page, next_cursor=next_cursor)

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
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                customer = await customers.insert_customer(connection, customer_request)
                await outbox.append(connection, [customers.customer_event(customer)])
            return await self._committed(connection, customer)

    async def add_address(
        self, customer_id: UUID | str, request: AddressRequest | Mapping[str, Any]
    ) -> Address:
        """Add a billing or shipping address to a customer."""
        target_id = _uuid(customer_id, "customer_id")
        address_request = parse(AddressRequest, request)
        pool = await self._customer_pool(target_id)
        async with pool.acquire() as connection:
            async with connection.transaction():
                address = await customers.insert_address(connection, target_id, address_request)
            return await self._committed(connection, address)

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

    async def orders_report(
        self, since: datetime, until: datetime, group_by: GroupBy | str = GroupBy.STATUS
    ) -> OrdersReport:
        """Orders created in ``[since, until)`` and their revenue, grouped by ``status``,
        ``day`` (UTC) or ``segment``, per currency.

        In sharded mode every shard is asked at once (each within
        ``postgres.shard_timeout_seconds``) and the answers merged; a shard that does not
        answer is named in ``missing`` and makes the report ``partial``.
        """
        grouping = check_period(since, until, group_by)
        gathered = await scatter(
            {
                name: partial(self._report_rows, pool, since, until, grouping)
                for name, pool in self._report_databases().items()
            },
            self._settings.postgres.shard_timeout_seconds,
        )
        return OrdersReport(
            since,
            until,
            grouping,
            merge_rows(gathered.results.values()),
            sorted(gathered.results),
            gathered.missing,
        )

    def _report_databases(self) -> dict[str, asyncpg.Pool]:
        """The databases holding orders, by name."""
        return {SINGLE: self._pool}

    @staticmethod
    async def _report_rows(
        pool: asyncpg.Pool, since: datetime, until: datetime, group_by: GroupBy
    ) -> list[ReportRow]:
        async with pool.acquire() as connection:
            return await report_rows(connection, since, until, group_by)

    async def _order_pool(self, order_id: UUID) -> asyncpg.Pool:
        """The pool of the database that holds order ``order_id``."""
        return self._pool

    async def _customer_pool(self, customer_id: UUID) -> asyncpg.Pool:
        """The pool of the database that holds customer ``customer_id``."""
        return self._pool

    async def _read(
        self, pool: asyncpg.Pool, read: Callable[[Connection], Awaitable[T]], token: int | None
    ) -> T:
        """Run ``read`` over ``pool``'s database (or one of its replicas)."""
        return await self._reads.run(read, token)

    async def _after_change(self, order: Order) -> None:
        """What follows a committed change of ``order`` (nothing in one database)."""

    async def _committed(self, connection: Connection, record: R) -> R:
        """``record``, with the consistency token of the write just committed on
        ``connection`` when replicas are configured."""
        if self._reads.enabled:
            record._consistency_token = format_token(await consistency_position(connection))
        return record

    def _parse_placement(
        self, request: PlaceOrderRequest | Mapping[str, Any], idempotency_key: str | None
    ) -> tuple[PlaceOrderRequest, idempotency.KeyClaim | None]:
        """The request, checked against the limits, and the claim of its key (if given)."""
        order_request = parse(PlaceOrderRequest, request)
        self._check_order_limits(order_request)
        if idempotency_key is None:
            return order_request, None
        claim = idempotency.KeyClaim(
            PLACE_ORDER_SCOPE,
            idempotency.validate_key(idempotency_key),
            idempotency.request_fingerprint(order_request),
            self._settings.idempotency.retention_seconds,
        )
        return order_request, claim

    async def _insert_placed(
        self,
        connection: Connection,
        order_id: UUID,
        request: PlaceOrderRequest,
        claim: idempotency.KeyClaim | None,
        reserved: Mapping[UUID, orders.Row] | None = None,
    ) -> PlacedOrder:
        """In the caller's transaction: order ``order_id`` with ``order.placed``, claiming the
        key; or, when an earlier request holds the key, that request's order (replayed)."""
        try:
            order, customer = await self._insert_order(
                connection, order_id, request, claim, reserved
            )
        except idempotency.KeyTaken:
            assert claim is not None
            existing = await idempotency.holder(connection, claim, order_id)
            if existing is not None:
                return PlacedOrder(await orders.fetch_order(connection, existing), True)
            order, customer = await self._insert_order(
                connection, order_id, request, None, reserved
            )
        headers = {"idempotency_key": claim.key} if claim is not None else None
        event = orders.order_event(order, ORDER_PLACED, customer, headers=headers)
        await outbox.append_order_events(connection, [event])
        return PlacedOrder(order, False)

    async def _insert_order(
        self,
        connection: Connection,
        order_id: UUID,
        request: PlaceOrderRequest,
        claim: idempotency.KeyClaim | None,
        reserved: Mapping[UUID, orders.Row] | None,
    ) -> tuple[Order, orders.CustomerSummary]:
        return await orders.insert_order(
            connection,
            order_id,
            request,
            self._pricing,
            self._settings.orders.number_prefix,
            self._settings.orders.payment_timeout_seconds,
            claim,
            reserved,
        )

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


def _token(consistency_token: str | None) -> int | None:
    return parse_token(consistency_token) if consistency_token is not None else None


def _status(value: OrderStatus | str) -> OrderStatus:
    try:
        return OrderStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in OrderStatus)
        raise ValidationError.single("status", f"{value!r} is not one of {allowed}") from None
