"""Placing an order in one database: the request checked against the limits, its key claimed,
the order, its items, its stock and ``order.placed`` written in the caller's transaction.

Both layouts place through here: one database in a transaction of its own, sharded mode inside
the saga's create step (with the units the catalog reserved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from gateway.configuration.settings import Settings
from gateway.errors import ValidationError
from gateway.postgres import outbox
from gateway.postgres.database import Connection
from gateway.write_path import idempotency, orders
from gateway.write_path.lifecycle import ORDER_PLACED
from gateway.write_path.models import Order, PlaceOrderRequest
from gateway.write_path.pricing import PricingPolicy
from gateway.write_path.validation import parse

PLACE_ORDER_SCOPE = "place_order"
"""The idempotency scope of order placements."""


@dataclass(frozen=True)
class PlacedOrder:
    """The outcome of :meth:`gateway.Gateway.place_order_once`."""

    order: Order
    replayed: bool


class OrderPlacer:
    """Checks placement requests and writes their orders, by the configured limits, pricing
    and key retention."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pricing = PricingPolicy.from_settings(settings.pricing)

    def parse(
        self, request: PlaceOrderRequest | Mapping[str, Any], idempotency_key: str | None
    ) -> tuple[PlaceOrderRequest, idempotency.KeyClaim | None]:
        """The request, checked against the limits, and the claim of its key (if given)."""
        order_request = parse(PlaceOrderRequest, request)
        self._check_limits(order_request)
        if idempotency_key is None:
            return order_request, None
        claim = idempotency.KeyClaim(
            PLACE_ORDER_SCOPE,
            idempotency.validate_key(idempotency_key),
            idempotency.request_fingerprint(order_request),
            self._settings.idempotency.retention_seconds,
        )
        return order_request, claim

    async def insert_placed(
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

    def _check_limits(self, request: PlaceOrderRequest) -> None:
        limits = self._settings.orders
        if len(request.items) > limits.max_items:
            raise ValidationError.single("items", f"at most {limits.max_items} items per order")
        for index, item in enumerate(request.items):
            if item.quantity > limits.max_quantity:
                raise ValidationError.single(
                    f"items[{index}].quantity", f"must be at most {limits.max_quantity}"
                )
