"""One simulated run of sharded mode's place-order saga: the real saga steps, sweeper and
reconciliation over the in-memory saga storage, driven by one seed through writers (with and
without idempotency keys, retries, concurrent duplicates), cancellations and confirmations,
payment notifications (succeeded or failed, of the right amount or not, redelivered) raced by
the payment timeout, sweeps at random times, clock jumps past reservations' expiry, crashes
and lost connections before or after any storage operation, shards that stop answering for a
while, and reconciliations mid-run. The invariants are checked after every step and at the end."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from collections.abc import Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock
from uuid import UUID

from gateway import order_ids
from gateway.errors import IdempotencyConflict, InsufficientInventory, ReservationLapsed
from gateway.payments.decision import PaymentOutcome
from gateway.payments.notification import PaymentNotification
from gateway.payments.recording import PaymentIdReused
from gateway.relay.errors import DATABASE_ERRORS
from gateway.sharding import sweeper
from gateway.sharding.reconcile import reconcile
from gateway.sharding.saga_steps import SagaSteps
from gateway.sharding.saga_storage import CatalogStorage, ShardStorage
from gateway.write_path.idempotency import KeyClaim, request_fingerprint
from gateway.write_path.models import PlaceOrderRequest
from gateway.write_path.order_status import OrderStatus
from gateway.write_path.placement import PlacedOrder
from simulation import saga_invariants
from simulation.clock import Stalled, VirtualTimeLoop
from simulation.determinism import deterministic
from simulation.payment_storage import InMemoryPayments
from simulation.saga_faults import PLAN, Plan, SagaFaults
from simulation.saga_storage import InMemoryCatalog, InMemoryShard

SHARDS = ("alpha", "beta")
PRODUCTS = 3
STOCK = 40
CUSTOMERS_PER_SHARD = 3
KEYS = 20
"""Idempotency keys are drawn from a few names shared by every customer, so that the same key
is used on both shards."""
RESERVATION_SECONDS = 30.0
SWEEP_TIMEOUT_SECONDS = 5.0
PAYMENT_SECONDS = 45.0
"""How long after it appears an order's payment is due."""
EXPECTED = (
    InsufficientInventory,
    ReservationLapsed,
    IdempotencyConflict,
    PaymentIdReused,
    *DATABASE_ERRORS,
)
"""What a writer may be answered besides its order."""


@dataclass
class SagaOutcome:
    """A run's trace and what went wrong (nothing, if ``violations`` is empty)."""

    seed: int
    trace: list[str]
    violations: list[str]
    step: int | None
    """The step after which the first violation was seen (``steps``: at the end)."""

    @property
    def digest(self) -> str:
        """A fingerprint of the trace: the same seed gives the same one."""
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()

    @property
    def ok(self) -> bool:
        return not self.violations


class SagaWriter(SagaSteps):
    """A writing process: the gateway's saga steps, over the simulation's storage."""

    def __init__(self, catalog: CatalogStorage) -> None:
        self._saga_catalog = catalog
        self._reservation_seconds = RESERVATION_SECONDS

    async def place(
        self,
        shard_name: str,
        shard: ShardStorage,
        request: PlaceOrderRequest,
        claim: KeyClaim | None,
    ) -> PlacedOrder:
        """Place the order as the sharded gateway does: reserve, create, commit."""
        reservation = await self._reserve(shard_name, request, claim)
        return await self._complete(
            shard,
            reservation,
            lambda: shard.create_order(reservation.order_id, request, claim, reservation.products),
        )


@dataclass
class SagaWorld:
    """The simulated world of one seed."""

    seed: int
    steps: int
    verbose: bool = False
    rng: random.Random = field(init=False)
    trace: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    failed_at: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    used_keys: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """Per shard and key, the fingerprints of the requests that used it."""
    sent: list[tuple[str, PlaceOrderRequest, KeyClaim]] = field(default_factory=list)
    """The keyed requests sent so far, which a client may send again."""
    notifications: list[tuple[str, PaymentNotification]] = field(default_factory=list)
    """The payment notifications sent so far, by shard, which a provider may send again."""
    answers: list[tuple[str, str, PaymentOutcome]] = field(default_factory=list)
    """Every answer a payment delivery got: shard, payment id, outcome."""
    first_seen: dict[UUID, float] = field(default_factory=dict)
    """When each order was first seen: its payment is due ``PAYMENT_SECONDS`` later."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    async def run(self, loop: VirtualTimeLoop) -> None:
        self.loop = loop
        self.faults = SagaFaults(self.rng, loop)
        self.products = [uuid.UUID(int=self.rng.getrandbits(128)) for _ in range(PRODUCTS)]
        self.initial = dict.fromkeys(self.products, STOCK)
        self.catalog = InMemoryCatalog(self.initial, loop.time, self.faults)
        self.shards = {name: InMemoryShard(name, self.faults) for name in SHARDS}
        self.payments = {name: InMemoryPayments(shard) for name, shard in self.shards.items()}
        self.customers = [
            (name, uuid.UUID(int=self.rng.getrandbits(128)))
            for name in SHARDS
            for _ in range(CUSTOMERS_PER_SHARD)
        ]
        for step in range(self.steps):
            self._act(step)
            await asyncio.sleep(self.rng.uniform(0.0, 2.0))
            self._check(step, saga_invariants.at_every_step)
            if self.violations:
                return
        await self._settle_down()
        self._check(self.steps, saga_invariants.at_the_end)

    def _act(self, step: int) -> None:
        draw = self.rng.random()
        if draw < 0.36:
            self._place(step)
        elif draw < 0.44:
            self._change_an_order(step, OrderStatus.CANCELLED)
        elif draw < 0.48:
            self._change_an_order(step, OrderStatus.CONFIRMED)
        elif draw < 0.58:
            self._pay(step)
        elif draw < 0.70:
            self._spawn(step, "sweep", self._sweep(), self._maybe_plan())
        elif draw < 0.74:
            shard = self.rng.choice(SHARDS)
            label = f"payment timeout on {shard}"
            self._spawn(step, label, self._time_out(shard), self._maybe_plan())
        elif draw < 0.84:
            seconds = self.rng.uniform(RESERVATION_SECONDS / 2, RESERVATION_SECONDS * 2)
            self._log(step, f"the clock jumps {seconds:.1f} s")
            self.loop.jump(seconds)
        elif draw < 0.88:
            shard, seconds = self.rng.choice(SHARDS), self.rng.uniform(5.0, 40.0)
            self._log(step, f"shard {shard} stops answering for {seconds:.1f} s")
            self.faults.take_down(shard, seconds)
        elif draw < 0.95:
            self._spawn(step, "reconcile", self._reconcile(), None)
        else:
            self._log(step, "nothing happens")

    def _place(self, step: int) -> None:
        if self.sent and self.rng.random() < 0.25:
            on, again, kept = self.rng.choice(self.sent)
            label = f"retry on {on} key {kept.key}"
            self._spawn(step, label, self._writer(on, again, kept), self._maybe_plan())
            return
        shard, customer = self.rng.choice(self.customers)
        lines = self.rng.sample(self.products, self.rng.randint(1, 2))
        request = PlaceOrderRequest(
            customer_id=customer,
            billing_address_id=customer,
            shipping_address_id=customer,
            items=[{"product_id": p, "quantity": self.rng.randint(1, 4)} for p in lines],
        )
        claim: KeyClaim | None = None
        if self.rng.random() < 0.6:
            key = f"key-{self.rng.randrange(KEYS)}"
            claim = KeyClaim("place_order", key, request_fingerprint(request), 86_400)
            self.sent.append((shard, request, claim))
        copies = 2 if claim is not None and self.rng.random() < 0.2 else 1
        for _ in range(copies):
            label = f"place {len(lines)} lines on {shard} key {claim.key if claim else None}"
            self._spawn(step, label, self._writer(shard, request, claim), self._maybe_plan())

    async def _writer(self, shard: str, request: PlaceOrderRequest, claim: KeyClaim | None) -> None:
        writer = SagaWriter(self.catalog)
        if claim is not None:
            self.used_keys.setdefault((shard, claim.key), set()).add(claim.fingerprint)
        try:
            placed = await writer.place(shard, self.shards[shard], request, claim)
        except IdempotencyConflict:
            if len(self.used_keys[(shard, claim.key if claim else "")]) < 2:
                self.violations.append(
                    f"a request on {shard} got a conflict for a key no other request of"
                    f" {shard} used"
                )
            raise
        self.trace.append(f"  placed {placed.order.id} replayed={placed.replayed}")

    def _change_an_order(self, step: int, status: OrderStatus) -> None:
        shard = self.shards[self.rng.choice(SHARDS)]
        if not shard.orders:
            self._log(step, f"no order on {shard.name} to make {status}")
            return
        order_id = self.rng.choice(sorted(shard.orders))
        self._spawn(
            step, f"{status} {order_id}", self._change(shard, order_id, status), self._maybe_plan()
        )

    async def _change(self, shard: InMemoryShard, order_id: UUID, status: OrderStatus) -> None:
        """As the gateway does: the transition, then (a cancellation) its units back at once,
        left to the sweeper when that fails."""
        if await shard.transition(order_id, status) and status is OrderStatus.CANCELLED:
            await self._return_at_once(shard, order_id)

    def _pay(self, step: int) -> None:
        if self.notifications and self.rng.random() < 0.3:
            shard, notification = self.rng.choice(self.notifications)
            if self.rng.random() < 0.2:
                changed = notification.amount + Decimal("1.00")
                notification = notification.model_copy(update={"amount": changed})
            label = f"redeliver {notification.payment_id} on {shard}"
            self._spawn(step, label, self._record(shard, notification), self._maybe_plan())
            return
        shard = self.rng.choice(SHARDS)
        orders = self.shards[shard].orders
        if not orders:
            self._log(step, f"no order on {shard} to pay")
            return
        order = orders[self.rng.choice(sorted(orders))]
        status = "succeeded" if self.rng.random() < 0.75 else "failed"
        amount = order.total_amount
        if self.rng.random() < 0.15:
            amount += Decimal("1.00")
        notification = PaymentNotification(
            payment_id=f"pay-{len(self.notifications)}",
            order_id=order.order_id,
            status=status,
            amount=amount,
            currency=order.currency,
            occurred_at=datetime.fromtimestamp(self.loop.time(), UTC),
        )
        self.notifications.append((shard, notification))
        label = f"payment {notification.payment_id} {status} {amount} on {shard}"
        self._spawn(step, label, self._record(shard, notification), self._maybe_plan())

    async def _record(self, shard: str, notification: PaymentNotification) -> None:
        """As the gateway does: record the payment, then (a cancellation) its units back at
        once, left to the sweeper when that fails."""
        answer = await self.payments[shard].record_payment(notification)
        self.answers.append((shard, notification.payment_id, answer.outcome))
        self.trace.append(f"  {notification.payment_id}: {answer.outcome} {answer.replayed=}")
        if answer.outcome is PaymentOutcome.CANCELLED and not answer.replayed:
            await self._return_at_once(self.shards[shard], notification.order_id)

    async def _time_out(self, shard: str) -> None:
        """The payment timeout: cancel the pending orders whose payment is due."""
        now = self.loop.time()
        due = sorted(
            order_id
            for order_id, order in self.shards[shard].orders.items()
            if order.status is OrderStatus.PENDING
            and self.first_seen[order_id] + PAYMENT_SECONDS <= now
        )
        for order_id in due:
            if await self.payments[shard].time_out(order_id):
                self.trace.append(f"  timed out {order_id}")
                await self._return_at_once(self.shards[shard], order_id)

    async def _return_at_once(self, shard: InMemoryShard, order_id: UUID) -> None:
        try:
            await sweeper.return_units(self.catalog, shard, [order_id])
        except DATABASE_ERRORS:
            return

    async def _sweep(self) -> None:
        limit = self.rng.randint(1, 8)
        due = self.catalog.due_by_shard()
        result = await sweeper.sweep_storages(
            self.catalog, self.shards, limit, SWEEP_TIMEOUT_SECONDS
        )
        self.trace.append(
            f"  swept {dict(result.settled)} unreachable {sorted(result.unreachable)}"
        )
        if result.swept:
            self.violations += saga_invariants.after_a_sweep(self.catalog, due, result, limit)

    async def _reconcile(self) -> None:
        result = await reconcile(self.catalog, self.shards)
        self.trace.append(
            f"  reconciled: {len(result.breaks)} breaks, missing {sorted(result.missing)}"
        )

    def _maybe_plan(self) -> Plan | None:
        if self.rng.random() >= 0.3:
            return None
        return Plan(
            operation=self.rng.randint(1, 6),
            before=self.rng.random() < 0.5,
            crash=self.rng.random() < 0.5,
        )

    def _spawn(
        self, step: int, label: str, work: Coroutine[Any, Any, None], plan: Plan | None
    ) -> None:
        self._log(step, f"{label}" + (f" ({plan})" if plan else ""))

        async def run() -> None:
            PLAN.set(plan)
            try:
                await work
            except asyncio.CancelledError:
                self.trace.append(f"  {label}: ended by a crash")
            except EXPECTED as error:
                self.trace.append(f"  {label}: {type(error).__name__}")
            except Exception as error:
                self.violations.append(f"{label}: unexpected {type(error).__name__}: {error}")

        self.tasks.append(self.loop.create_task(run()))

    async def _settle_down(self) -> None:
        """The end: faults stop, every task finishes, every reservation expires and is swept,
        and a reconciliation finds nothing to repair."""
        self.faults.heal()
        await asyncio.gather(*self.tasks)
        self.loop.jump(RESERVATION_SECONDS * 2)
        for _ in range(20):
            result = await sweeper.sweep_storages(self.catalog, self.shards, 50)
            if result.total == 0:
                break
        found = await reconcile(self.catalog, self.shards, repair=False)
        self.violations += [f"reconcile found {b.as_json()}" for b in found.breaks]

    def _check(self, step: int, invariant: Any) -> None:
        for shard in self.shards.values():
            for order_id in shard.orders:
                self.first_seen.setdefault(order_id, self.loop.time())
        found = invariant(self.initial, self.catalog, self.shards)
        found += saga_invariants.of_payments(self.shards, self.answers)
        if (found or self.violations) and self.failed_at is None:
            self.failed_at = step
        self.violations += found

    def _log(self, step: int, line: str) -> None:
        entry = f"{step:4d} t={self.loop.time():9.2f} {line}"
        self.trace.append(entry)
        if self.verbose:
            print(entry)


def _order_ids_from(rng: random.Random) -> AbstractContextManager[Any]:
    """New order ids drawn from the seed (they come from ``os.urandom`` otherwise)."""

    class _Seeded:
        @staticmethod
        def urandom(size: int) -> bytes:
            return rng.getrandbits(size * 8).to_bytes(size, "big")

    return mock.patch.object(order_ids, "os", _Seeded)


def simulate_saga(seed: int, steps: int = 150, *, verbose: bool = False) -> SagaOutcome:
    """Run seed ``seed`` for ``steps`` steps."""
    world = SagaWorld(seed, steps, verbose)
    loop = VirtualTimeLoop()
    logging.getLogger("gateway.sharding").disabled = True
    try:
        with deterministic(world.rng, loop.time), _order_ids_from(world.rng):
            loop.run_until_complete(world.run(loop))
    except Stalled as stalled:
        world.violations.append(f"stalled: {stalled}")
    finally:
        logging.getLogger("gateway.sharding").disabled = False
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()

        async def drained() -> None:
            await asyncio.gather(*pending, return_exceptions=True)

        loop.run_until_complete(drained())
        loop.close()
    step = world.failed_at if world.violations and world.failed_at is not None else None
    if world.violations and step is None:
        step = steps
    return SagaOutcome(seed, world.trace, world.violations, step)
