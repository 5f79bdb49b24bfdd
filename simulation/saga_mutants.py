"""Known defects of sharded mode's place-order saga, put back by patching the real modules (or
the in-memory storage's rules) in this process, for ``python -m simulation.mutants --saga``
to count the seeds the saga's simulation needs to find each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock
from uuid import UUID

from gateway.payments.decision import timeout_steps
from gateway.payments.notification import PaymentNotification
from gateway.sharding import saga_steps, sweeper
from gateway.sharding.decisions import Decision
from gateway.sharding.reservations import Settlement
from gateway.sharding.saga import settlement_of_expired
from gateway.sharding.saga_storage import CatalogStorage, ShardRecords
from gateway.write_path.order_status import RESTOCKING_STATUSES
from simulation.payment_storage import InMemoryPayments
from simulation.saga_storage import InMemoryCatalog, InMemoryShard, StoredReservation
from simulation.saga_world import simulate_saga


@dataclass(frozen=True)
class SagaMutant:
    """A defect of the saga and how to put it back."""

    name: str
    patch: Callable[[], AbstractContextManager[Any]]


@contextmanager
def as_it_is() -> Iterator[None]:
    """The saga as it is."""
    yield


def no_decision_row() -> AbstractContextManager[Any]:
    """(a) No decision is recorded: the writer creates the order unchecked, and the sweeper
    releases an expired reservation whose order it does not find."""

    def nothing_recorded(self: InMemoryShard, order_id: UUID, wanted: Decision) -> Decision:
        return wanted

    async def settle_by_order(
        catalog: CatalogStorage,
        name: str,
        shard: ShardRecords,
        limit: int,
        result: sweeper.SweepResult,
        timeout_seconds: float | None = None,
    ) -> None:
        due = await catalog.expired(name, limit)
        statuses = await shard.order_statuses(due)
        for order_id in due:
            status = statuses.get(order_id)
            if status is None:
                settlement = Settlement.RELEASE
            elif status in RESTOCKING_STATUSES:
                settlement = Settlement.RETURN
            else:
                settlement = Settlement.COMMIT
            if await catalog.settle(order_id, settlement):
                result.settled[settlement] += 1

    stack = ExitStack()
    stack.enter_context(mock.patch.object(InMemoryShard, "record_decision", nothing_recorded))
    stack.enter_context(mock.patch.object(sweeper, "settle_expired", settle_by_order))
    return stack


def statuses_read_before_deciding() -> AbstractContextManager[Any]:
    """(b) The sweeper reads the orders' statuses before it records its decisions: an order
    created in between is found ``created`` and missing, and its units are given back."""

    async def stale(
        catalog: CatalogStorage,
        name: str,
        shard: ShardRecords,
        limit: int,
        result: sweeper.SweepResult,
        timeout_seconds: float | None = None,
    ) -> None:
        due = await catalog.expired(name, limit)
        statuses = await shard.order_statuses(due)
        for order_id in due:
            decision = await shard.decide(order_id, Decision.ABANDONED, 1.0)
            settlement = settlement_of_expired(decision, statuses.get(order_id))
            if settlement is not None and await catalog.settle(order_id, settlement):
                result.settled[settlement] += 1

    return mock.patch.object(sweeper, "settle_expired", stale)


def keys_across_shards() -> AbstractContextManager[Any]:
    """(c) A held reservation's key is looked up across every shard, not in the request's."""
    held_with_key = InMemoryCatalog._held_with_key

    def any_shard(self: InMemoryCatalog, shard: str, key: Any) -> StoredReservation | None:
        for found in self.reservations.values():
            if found.key == key.key and found.shard != shard:
                return held_with_key(self, found.shard, key)
        return held_with_key(self, shard, key)

    return mock.patch.object(InMemoryCatalog, "_held_with_key", any_shard)


def released_when_unknown() -> AbstractContextManager[Any]:
    """(d) A lost connection counts as a refusal: the writer gives up on the reservation when
    whether its order was created is unknown (the decision still guards the release)."""

    def also_on_unavailability(error: BaseException) -> bool:
        return not isinstance(error, asyncio.CancelledError)

    return mock.patch.object(saga_steps, "release_at_once", also_on_unavailability)


def released_when_unknown_unguarded() -> AbstractContextManager[Any]:
    """(d') As (d), and the writer releases whatever decision stands."""
    stack = ExitStack()
    stack.enter_context(released_when_unknown())
    stack.enter_context(mock.patch.object(saga_steps, "released_after_abandoning", bool))
    return stack


def oldest_first_across_shards() -> AbstractContextManager[Any]:
    """(e) Head-of-line blocking: each sweep takes the ``limit`` oldest expired reservations
    of every shard together, so those of a shard that does not answer, the oldest, keep the
    others' from being settled."""

    async def global_window(self: InMemoryCatalog, shard: str, limit: int) -> list[UUID]:
        await self._hooks.before("catalog", "expired")
        oldest = sorted(self._expired(), key=lambda found: found.expires_at)[:limit]
        return [found.order_id for found in oldest if found.shard == shard]

    return mock.patch.object(InMemoryCatalog, "expired", global_window)


def redelivered_payment_applied_again() -> AbstractContextManager[Any]:
    """(f) A redelivered payment is recorded and applied again, as if its id were new."""
    record_payment = InMemoryPayments.record_payment

    async def forgetful(self: InMemoryPayments, notification: PaymentNotification) -> Any:
        self.shard.payments.pop(notification.payment_id, None)
        return await record_payment(self, notification)

    return mock.patch.object(InMemoryPayments, "record_payment", forgetful)


def timeout_cancels_a_paid_order() -> AbstractContextManager[Any]:
    """(g) The payment timeout cancels an order whatever its status, a confirmed one too."""

    async def regardless(self: InMemoryPayments, order_id: UUID) -> bool:
        found = self.shard.orders.get(order_id)
        cancellable = found is not None and found.status not in RESTOCKING_STATUSES
        if found is not None and cancellable:
            self.apply_steps(found, timeout_steps())
        return cancellable

    return mock.patch.object(InMemoryPayments, "time_out", regardless)


SAGA_MUTANTS = [
    SagaMutant("saga as it is", as_it_is),
    SagaMutant("(a) no decision row", no_decision_row),
    SagaMutant("(b) order statuses read before deciding", statuses_read_before_deciding),
    SagaMutant("(c) reservation keys global across shards", keys_across_shards),
    SagaMutant("(d) released at once on a lost connection", released_when_unknown),
    SagaMutant("(d') as (d), whatever decision stands", released_when_unknown_unguarded),
    SagaMutant("(e) oldest expired first across shards", oldest_first_across_shards),
    SagaMutant("(f) redelivered payment applied again", redelivered_payment_applied_again),
    SagaMutant("(g) payment timeout cancels a paid order", timeout_cancels_a_paid_order),
]


def saga_seeds_to_find(mutant: SagaMutant, max_seeds: int, steps: int) -> tuple[int, str] | None:
    """The first seed that breaks an invariant of the saga under ``mutant``, and what broke."""
    with mutant.patch():
        for seed in range(max_seeds):
            outcome = simulate_saga(seed, steps)
            if not outcome.ok:
                return seed, outcome.violations[0]
    return None
