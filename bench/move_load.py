"""The load of ``bench/moves.py``: customers with orders to start from, and workers that place
orders and move them a status on through ``Gateway.place_order`` and ``Gateway.transition``,
each at a fixed rate, timing every request; a ledger of every order placed and where the load
left it, for the check at the end."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.move_figures import Request, Span
from gateway import Customer, Gateway, Order, OrderStatus, Product
from support.shop import Shop

TRANSITION_SHARE = 0.6
"""Of the requests for a customer with an order left to move on; the others place one."""
NEXT_STATUS = {
    OrderStatus.PENDING: OrderStatus.CONFIRMED,
    OrderStatus.CONFIRMED: OrderStatus.PROCESSING,
    OrderStatus.PROCESSING: OrderStatus.SHIPPED,
    OrderStatus.SHIPPED: OrderStatus.DELIVERED,
}


@dataclass
class Placed:
    """An order as the load last left it."""

    customer_id: uuid.UUID
    status: OrderStatus
    version: int


@dataclass
class Ledger:
    """Every order the run placed and where the load left it; each customer's orders that can
    move a status on, lent to one request at a time so that no two change the same order."""

    orders: dict[uuid.UUID, Placed] = field(default_factory=dict)
    open: defaultdict[uuid.UUID, deque[uuid.UUID]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    uncertain: set[uuid.UUID] = field(default_factory=set)
    """Orders whose transition failed: their status is not known here."""

    def record(self, order: Order) -> None:
        """Keep ``order`` as it is now, and lend it out again if it can move on."""
        self.orders[order.id] = Placed(order.customer_id, order.status, order.version)
        if order.status in NEXT_STATUS:
            self.open[order.customer_id].append(order.id)

    def lend(self, customer_id: uuid.UUID) -> uuid.UUID | None:
        """One of the customer's orders that can move on, until it is recorded again."""
        queue = self.open[customer_id]
        return queue.popleft() if queue else None


@dataclass
class Load:
    """What the workers share with whoever runs the phases."""

    phase: int = -1
    """The phase requests that start now belong to (-1: the warm-up)."""
    moving: Customer | None = None
    """The customer being moved, at whom the moving customers' workers aim meanwhile."""
    requests: list[Request] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def order_request(
    customer: Customer, products: Sequence[Product], rng: random.Random
) -> dict[str, Any]:
    """An order of one or two of ``products``, one to three units each."""
    lines = [(product, rng.randint(1, 3)) for product in rng.sample(products, rng.randint(1, 2))]
    return Shop.order(customer, *lines)


async def request_once(
    gateway: Gateway,
    ledger: Ledger,
    customer: Customer,
    products: Sequence[Product],
    rng: random.Random,
) -> str:
    """Move one of the customer's orders a status on (``TRANSITION_SHARE`` of the time, when it
    has one that can), else place one with an idempotency key; the operation's name. Errors go
    through."""
    order_id = ledger.lend(customer.id) if rng.random() < TRANSITION_SHARE else None
    if order_id is None:
        request = order_request(customer, products, rng)
        ledger.record(await gateway.place_order(request, idempotency_key=str(uuid.uuid4())))
        return "place"
    try:
        order = await gateway.transition(order_id, NEXT_STATUS[ledger.orders[order_id].status])
    except BaseException:
        ledger.uncertain.add(order_id)
        raise
    ledger.record(order)
    return "transition"


async def worker(
    gateway: Gateway,
    load: Load,
    ledger: Ledger,
    group: str,
    pick: Callable[[], Customer],
    products: Sequence[Product],
    interval: float,
    rng: random.Random,
) -> None:
    """Requests for the customers ``pick`` names, one at a time, one every ``interval``
    seconds (at once when the last took longer: no catching up in bursts), until stopped."""
    next_start = time.monotonic()
    while not load.stopping.is_set():
        customer, phase = pick(), load.phase
        started = time.monotonic()
        try:
            operation = await request_once(gateway, ledger, customer, products, rng)
        except Exception as error:  # counted; any fails the run
            operation = "failed"
            load.errors[f"{type(error).__name__}: {error}"] += 1
        ended = time.monotonic()
        load.requests.append(Request(group, customer.id, operation, Span(started, ended), phase))
        next_start = max(next_start + interval, ended)
        await asyncio.sleep(max(0.0, next_start - time.monotonic()))


async def seeded(
    gateway: Gateway, ledger: Ledger, count: int, orders: int, products: Sequence[Product]
) -> list[Customer]:
    """``count`` new customers with ``orders`` orders each, a third of them confirmed."""
    shop = Shop(gateway)
    customers = [await shop.customer() for _ in range(count)]
    rng = random.Random(count)
    limit = asyncio.Semaphore(8)

    async def place(customer: Customer, index: int) -> None:
        async with limit:
            request = order_request(customer, products, rng)
            order = await gateway.place_order(request, idempotency_key=str(uuid.uuid4()))
            if index % 3 == 0:
                order = await gateway.transition(order.id, OrderStatus.CONFIRMED)
            ledger.record(order)

    await asyncio.gather(*(place(c, n) for c in customers for n in range(orders)))
    return customers
