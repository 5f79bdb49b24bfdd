"""The :class:`Gateway`: the public entry point, over the databases' layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID

import asyncpg

from gateway.configuration.settings import Settings, load_settings
from gateway.errors import GatewayError, ValidationError
from gateway.facade.layout import Layout
from gateway.facade.one_database import OneDatabase
from gateway.history import store as history
from gateway.history.store import OrderEvent
from gateway.payments import recording
from gateway.payments.decision import PaymentOutcome
from gateway.payments.notification import PaymentNotification, RecordedPayment
from gateway.postgres import outbox
from gateway.postgres.database import Connection
from gateway.postgres.outbox import Event
from gateway.postgres.replicas import ReplicaState
from gateway.postgres.tokens import ConsistencyToken, parse_token
from gateway.postgres.topology import Topology
from gateway.sharding.layout import ShardedLayout
from gateway.sharding.scatter import scatter
from gateway.telemetry.tracing import operation
from gateway.write_path import catalog, customers, orders
from gateway.write_path.models import (
    Address,
    AddressRequest,
    Category,
    CategoryRequest,
    Customer,
    CustomerRequest,
    Order,
    OrderPage,
    PlaceOrderRequest,
    Product,
    ProductRequest,
)
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.orders_report import (
    GroupBy,
    OrdersReport,
    ReportRow,
    check_period,
    merge_rows,
    report_rows,
)
from gateway.write_path.pages import (
    DEFAULT_PAGE_SIZE,
    check_page_size,
    decode_cursor,
    encode_cursor,
)
from gateway.write_path.placement import OrderPlacer, PlacedOrder
from gateway.write_path.validation import parse

T = TypeVar("T")


class Gateway:
    """Writes orders to PostgreSQL and appends their events to the outbox atomically.

    Create it with ``await Gateway.connect(settings)`` and release it with ``await close()``,
    or use it as an async context manager. Every write runs in one transaction: when a method
    raises, nothing it did is kept.
    """

    def __init__(self, layout: Layout, placer: OrderPlacer, settings: Settings) -> None:
        self._layout = layout
        self._placer = placer
        self._settings = settings

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> Gateway:
        """Open a pool to the configured database (default: :func:`load_settings`), and to
        its replicas, if any (a replica that is down is used once it answers).

        With ``postgres.shards``, pools to the catalog and to every shard (see
        :attr:`sharding`).
        """
        settings = settings if settings is not None else load_settings()
        placer = OrderPlacer(settings)
        layout: Layout
        if Topology.of(settings.postgres).sharded:
            layout = await ShardedLayout.open(settings, placer)
        else:
            layout = await OneDatabase.open(settings, placer)
        return cls(layout, placer, settings)

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool, for callers that write their own rows next to events (in sharded
        mode, the catalog's)."""
        return self._layout.pool

    @property
    def topology(self) -> Topology:
        """The databases behind this gateway, and whether it is sharded."""
        return self._layout.topology

    @property
    def sharding(self) -> ShardedLayout:
        """What only sharded mode has: the shards' pools, routing, the sweeper and
        reconciliation; ``GatewayError`` when the gateway is not sharded."""
        if not isinstance(self._layout, ShardedLayout):
            raise GatewayError("the gateway is not sharded (no postgres.shards configured)")
        return self._layout

    def order_pools(self) -> Mapping[str, asyncpg.Pool]:
        """The pools of the databases that hold orders, by database name."""
        return self._layout.order_pools()

    @property
    def settings(self) -> Settings:
        """The settings this gateway runs with."""
        return self._settings

    @property
    def replicas(self) -> list[ReplicaState]:
        """Each configured replica's state, as last checked."""
        return self._layout.replicas

    async def close(self) -> None:
        """Close the pools, waiting for connections in use to be released."""
        await self._layout.close()

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
        order_request, claim = self._placer.parse(request, idempotency_key)
        with operation("place order"):
            placed = await self._layout.place(order_request, claim)
        return placed.order

    async def place_order_once(
        self, request: PlaceOrderRequest | Mapping[str, Any], *, idempotency_key: str
    ) -> PlacedOrder:
        """Like :meth:`place_order` with a key, and say whether the order was created now.

        ``PlacedOrder.replayed`` is true when the key was already used for the same request:
        nothing was written and ``order`` is that earlier order as it is now.
        """
        order_request, claim = self._placer.parse(request, idempotency_key)
        with operation("place order"):
            return await self._layout.place(order_request, claim)

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

        async def change(pool: asyncpg.Pool) -> Order:
            async with pool.acquire() as connection:
                changed = await orders.transition(connection, target_id, target, expected_version)
                return await self._layout.committed(pool, connection, changed)

        with operation("transition order"):
            order = await self._layout.on_order(target_id, change)
        await self._layout.after_change(order)
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

        async def apply(pool: asyncpg.Pool) -> tuple[PaymentOutcome, bool, Order]:
            async with pool.acquire() as connection:
                async with connection.transaction():
                    outcome, change = await recording.record_payment(connection, parsed)
                    if change is not None:
                        await outbox.append_order_events(connection, change.events)
                        order = change.order
                    else:
                        order = await orders.fetch_order(connection, parsed.order_id)
                return (
                    outcome,
                    change is None,
                    await self._layout.committed(pool, connection, order),
                )

        with operation("record payment"):
            outcome, redelivered, order = await self._layout.on_order(parsed.order_id, apply)
        await self._layout.after_change(order)
        return RecordedPayment(parsed.payment_id, outcome, redelivered, order)

    async def order_events(
        self, order_id: UUID | str, *, consistency_token: str | None = None
    ) -> list[OrderEvent]:
        """The order's events in version order, its whole history (read like
        :meth:`get_order`); ``NotFound`` if there is no such order."""
        target_id = _uuid(order_id, "order_id")
        token = _token(consistency_token)

        async def read(connection: Connection) -> list[OrderEvent]:
            return await history.read_stream(connection, target_id)

        return await self._layout.on_order(
            target_id, partial(self._layout.read, read=read, token=token)
        )

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

        return await self._layout.on_order(
            target_id, partial(self._layout.read, read=read, token=token)
        )

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

        found = await self._layout.on_customer(
            target_id, partial(self._layout.read, read=read, token=token)
        )
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
        return await self._layout.create_customer(parse(CustomerRequest, request))

    async def add_address(
        self, customer_id: UUID | str, request: AddressRequest | Mapping[str, Any]
    ) -> Address:
        """Add a billing or shipping address to a customer."""
        target_id = _uuid(customer_id, "customer_id")
        address_request = parse(AddressRequest, request)

        async def add(pool: asyncpg.Pool) -> Address:
            async with pool.acquire() as connection:
                async with connection.transaction():
                    address = await customers.insert_address(connection, target_id, address_request)
                return await self._layout.committed(pool, connection, address)

        return await self._layout.on_customer(target_id, add)

    async def create_category(self, request: CategoryRequest | Mapping[str, Any]) -> Category:
        """Create a product category."""
        category_request = parse(CategoryRequest, request)
        async with self.pool.acquire() as connection, connection.transaction():
            return await catalog.insert_category(connection, category_request)

    async def create_product(self, request: ProductRequest | Mapping[str, Any]) -> Product:
        """Create a product with its price and initial stock."""
        product_request = parse(ProductRequest, request)
        async with self.pool.acquire() as connection, connection.transaction():
            return await catalog.insert_product(connection, product_request)

    async def purge_expired_idempotency_keys(self) -> int:
        """Forget idempotency keys older than the retention; return how many were removed."""
        return await self._layout.purge_expired_idempotency_keys()

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
                for name, pool in self._layout.order_pools().items()
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

    @staticmethod
    async def _report_rows(
        pool: asyncpg.Pool, since: datetime, until: datetime, group_by: GroupBy
    ) -> list[ReportRow]:
        async with pool.acquire() as connection:
            return await report_rows(connection, since, until, group_by)


def _uuid(value: UUID | str, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError.single(field, f"{value!r} is not a valid UUID") from None


def _token(consistency_token: str | None) -> ConsistencyToken | None:
    return parse_token(consistency_token) if consistency_token is not None else None


def _status(value: OrderStatus | str) -> OrderStatus:
    try:
        return OrderStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in OrderStatus)
        raise ValidationError.single("status", f"{value!r} is not one of {allowed}") from None
