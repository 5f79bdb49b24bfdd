"""Where the load goes: the gateway in-process, its HTTP API, or the naive dual write.

Each target places orders and moves them along, and reports what it wrote as a
:class:`Written` (enough to find the order in a store afterwards). A failed write raises
:class:`WriteFailed` with a short error kind for the report's error counts.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

import aiohttp

from adapters.base import Outcome, Sink
from gateway.errors import GatewayError
from gateway.facade.gateway import Gateway
from gateway.payments.signature import SIGNATURE_HEADER, signature_header
from gateway.postgres.outbox import Event
from gateway.write_path import orders
from gateway.write_path.lifecycle import ORDER_PLACED
from gateway.write_path.models import Order, PlaceOrderRequest
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.pricing import PricingPolicy


@dataclass(frozen=True)
class Written:
    """An order as a write left it."""

    order_id: str
    version: int
    status: str
    created_at: datetime
    updated_at: datetime
    total_amount: str = "0"
    currency: str = "USD"

    @classmethod
    def of(cls, order: Order) -> Written:
        """From the gateway's order record."""
        return cls(
            str(order.id),
            order.version,
            order.status.value,
            order.created_at,
            order.updated_at,
            str(order.total_amount),
            order.currency,
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Written:
        """From the API's JSON order."""
        return cls(
            str(body["id"]),
            int(body["version"]),
            str(body["status"]),
            datetime.fromisoformat(body["created_at"]),
            datetime.fromisoformat(body["updated_at"]),
            str(body["total_amount"]),
            str(body["currency"]),
        )


def payment_notification(order: Written, status: str, payment_id: str) -> dict[str, Any]:
    """A provider's notification of a payment of the whole order, ``succeeded`` or
    ``failed``."""
    return {
        "payment_id": payment_id,
        "order_id": order.order_id,
        "status": status,
        "amount": order.total_amount,
        "currency": order.currency,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


class WriteFailed(Exception):
    """A write the load test asked for failed; ``kind`` groups it in the report."""

    def __init__(self, kind: str, *, committed: Written | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.committed = committed


class WriteTarget(Protocol):
    """Something the load test writes orders to."""

    def prepare(self, request: dict[str, Any]) -> Any:
        """The order request in the form :meth:`place` takes, made before the load starts."""
        ...

    async def place(self, request: Any, key: str) -> Written:
        """Place a prepared order (with an idempotency key where the target takes one)."""
        ...

    async def transition(self, order_id: str, status: str, expected_version: int) -> Written:
        """Move an order to ``status`` if it is still at ``expected_version``."""
        ...

    async def pay(self, order: Written, status: str, payment_id: str) -> tuple[Written, str]:
        """Notify a payment of ``order`` (``succeeded`` or ``failed``); the order after it
        and the outcome."""
        ...

    async def warm(self) -> None:
        """Open the connections the load will use, before it starts (not timed)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class EmbeddedTarget:
    """Calls :class:`Gateway` in this process: the outbox path without HTTP."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        """The gateway takes the request as it is (and validates it, as for any caller)."""
        return request

    async def place(self, request: dict[str, Any], key: str) -> Written:
        try:
            return Written.of(await self.gateway.place_order(request, idempotency_key=key))
        except GatewayError as error:
            raise WriteFailed(type(error).__name__) from error

    async def transition(self, order_id: str, status: str, expected_version: int) -> Written:
        try:
            order = await self.gateway.transition(
                order_id, status, expected_version=expected_version
            )
        except GatewayError as error:
            raise WriteFailed(type(error).__name__) from error
        return Written.of(order)

    async def pay(self, order: Written, status: str, payment_id: str) -> tuple[Written, str]:
        try:
            recorded = await self.gateway.record_payment(
                payment_notification(order, status, payment_id)
            )
        except GatewayError as error:
            raise WriteFailed(type(error).__name__) from error
        return Written.of(recorded.order), recorded.outcome.value

    async def warm(self) -> None:
        await open_pool(self.gateway)

    async def close(self) -> None:
        """The gateway belongs to the caller."""


async def open_pool(gateway: Gateway) -> None:
    """Open every connection of the gateway's pool (the first requests would otherwise wait
    for connections being made: a cost of starting, not of the load)."""
    pool = gateway.pool
    connections = [await pool.acquire() for _ in range(pool.get_max_size())]
    for connection in connections:
        await pool.release(connection)


class HttpTarget:
    """Calls the gateway's HTTP API (``fanout serve``).

    aiohttp, with a keep-alive pool as large as the requests the driver keeps in flight and
    bodies encoded before the load starts: the client's CPU per request is a fraction of the
    server's, so the measurement is of the server.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        connections: int,
        webhook_secret: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.connections = connections
        self.webhook_secret = webhook_secret
        self._session: aiohttp.ClientSession | None = None

    def prepare(self, request: dict[str, Any]) -> bytes:
        """The JSON body."""
        return json.dumps(request).encode()

    async def place(self, request: bytes, key: str) -> Written:
        return await self._post("/orders", request, {**self.headers, "Idempotency-Key": key})

    async def transition(self, order_id: str, status: str, expected_version: int) -> Written:
        body = json.dumps({"status": status, "expected_version": expected_version}).encode()
        return await self._post(f"/orders/{order_id}/transitions", body, self.headers)

    async def pay(self, order: Written, status: str, payment_id: str) -> tuple[Written, str]:
        """A signed notification to the payment webhook, as a provider sends it."""
        if self.webhook_secret is None:
            raise WriteFailed("no payments.webhook_secret to sign with")
        body = json.dumps(payment_notification(order, status, payment_id)).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(body, [self.webhook_secret], int(time.time())),
        }
        receipt = await self._send("/webhooks/payments", body, headers)
        return Written.from_json(receipt["order"]), str(receipt["outcome"])

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: a session belongs to a running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections, ttl_dns_cache=None),
                timeout=aiohttp.ClientTimeout(total=30.0),
            )
        return self._session

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Written:
        return Written.from_json(await self._send(path, body, headers))

    async def _send(self, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            async with self._client().post(self.url + path, data=body, headers=headers) as reply:
                content = await reply.read()
                status = reply.status
                content_type = reply.content_type
        except (aiohttp.ClientError, TimeoutError) as error:
            raise WriteFailed(type(error).__name__) from error
        if status >= 300:
            kind = f"HTTP {status}"
            if content_type == "application/problem+json":
                kind += " " + str(json.loads(content).get("type", "")).rsplit(":", 1)[-1]
            raise WriteFailed(kind)
        answer: dict[str, Any] = json.loads(content)
        return answer

    async def warm(self) -> None:
        """Connections are made by the first requests (the server's pool is its own)."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class DualWriteTarget:
    """The naive alternative: commit to PostgreSQL, then write each store in the request.

    This is what the original design's ``save_order`` did. Nothing is appended to the outbox,
    so nothing repairs a store that missed a write: a store failure after the commit leaves
    the order in PostgreSQL and in only some stores (the request fails at the first store
    that fails; the later ones are not written either).
    """

    def __init__(self, gateway: Gateway, sinks: Mapping[str, Sink]) -> None:
        self.gateway = gateway
        self.sinks = dict(sinks)
        self.pricing = PricingPolicy.from_settings(gateway.settings.pricing)
        self.sequence = itertools.count(1)

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        """Validated per request, as the gateway does."""
        return request

    async def place(self, request: dict[str, Any], key: str) -> Written:
        order_request = PlaceOrderRequest.model_validate(request)
        try:
            async with self.gateway.pool.acquire() as connection, connection.transaction():
                order, customer = await orders.insert_order(
                    connection,
                    uuid4(),
                    order_request,
                    self.pricing,
                    self.gateway.settings.orders.number_prefix,
                    self.gateway.settings.orders.payment_timeout_seconds,
                )
        except GatewayError as error:
            raise WriteFailed(type(error).__name__) from error
        event = orders.order_event(order, ORDER_PLACED, customer)
        return await self._write_stores(order, event)

    async def transition(self, order_id: str, status: str, expected_version: int) -> Written:
        try:
            async with self.gateway.pool.acquire() as connection, connection.transaction():
                change = await orders.change_status(
                    connection, UUID(order_id), OrderStatus(status), expected_version
                )
        except GatewayError as error:
            raise WriteFailed(type(error).__name__) from error
        [event] = change.events
        return await self._write_stores(change.order, event)

    async def pay(self, order: Written, status: str, payment_id: str) -> tuple[Written, str]:
        """The naive path has no payment saga (the plan refuses --payments with it)."""
        raise WriteFailed("the dual write takes no payments")

    async def _write_stores(self, order: Order, event: Event) -> Written:
        written = Written.of(order)
        envelope = orders.as_envelope(event, next(self.sequence), order.updated_at)
        for name, sink in self.sinks.items():
            try:
                [delivery] = await sink.apply([envelope])
            except Exception as error:  # the naive path lets any store error fail the request
                raise WriteFailed(f"{name}: {type(error).__name__}", committed=written) from error
            if delivery.outcome is not Outcome.DELIVERED:
                raise WriteFailed(f"{name}: {delivery.outcome.value}", committed=written)
        return written

    async def warm(self) -> None:
        await open_pool(self.gateway)

    async def close(self) -> None:
        """The gateway and sinks belong to the caller."""
