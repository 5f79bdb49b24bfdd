"""Where a batch is retried: the retry and dead-letter decision, and the retry loop."""

from __future__ import annotations

from collections.abc import Iterator

from adapters.base import Delivery, Outcome
from gateway.backoff import Backoff
from gateway.postgres.outbox import StoredEvent
from gateway.relay.retries import (
    Pending,
    Retrier,
    Verdict,
    backoff_step,
    judge,
    retrying_per_partition,
    store_may_be_down,
)
from tests.unit.relay_fakes import envelope

DELIVERED = Delivery(Outcome.DELIVERED)
TRANSIENT = Delivery.transient("timed out")
PERMANENT = Delivery(Outcome.PERMANENT, "bad payload")


def events(count: int) -> list[StoredEvent]:
    return [StoredEvent(n, n, n % 16, envelope(f"o{n}")) for n in range(1, count + 1)]


def test_each_outcome_is_delivered_dead_or_retried_with_its_failure_counted() -> None:
    first, second, third = events(3)
    verdict = judge(
        [Pending(first, 0), Pending(second, 0), Pending(third, 2)],
        [DELIVERED, PERMANENT, TRANSIENT],
        max_attempts=5,
        store_down=False,
    )
    assert verdict.delivered == [first]
    [dead] = verdict.dead
    assert (dead.event, dead.reason, dead.error, dead.attempts) == (
        second,
        "permanent",
        "bad payload",
        1,
    )
    assert verdict.retry == [Pending(third, 3)]
    assert verdict.last_error == "timed out"


def test_an_event_out_of_attempts_is_dead_lettered() -> None:
    [event] = events(1)
    verdict = judge([Pending(event, 4)], [TRANSIENT], max_attempts=5, store_down=False)
    assert verdict.retry == []
    [dead] = verdict.dead
    assert (dead.reason, dead.attempts) == ("attempts_exhausted", 5)


def test_while_the_store_is_down_no_attempt_is_counted() -> None:
    [event] = events(1)
    verdict = judge([Pending(event, 4)], [TRANSIENT], max_attempts=5, store_down=True)
    assert verdict.dead == []
    assert verdict.retry == [Pending(event, 4)]


def test_an_event_held_behind_a_failed_one_is_retried_without_an_attempt_counted() -> None:
    earlier, later = events(2)
    verdict = judge(
        [Pending(earlier, 1), Pending(later, 2)],
        [TRANSIENT, Delivery.held("held behind a failed version")],
        max_attempts=3,
        store_down=False,
    )
    assert verdict.dead == []
    assert verdict.retry == [Pending(earlier, 2), Pending(later, 2)]
    assert verdict.last_error == "held behind a failed version"


def test_only_a_batch_that_failed_whole_and_transiently_may_mean_the_store_is_down() -> None:
    assert store_may_be_down([TRANSIENT, TRANSIENT])
    assert not store_may_be_down([TRANSIENT, DELIVERED])
    assert not store_may_be_down([TRANSIENT, PERMANENT])
    assert not store_may_be_down([])


def test_the_backoff_follows_the_outage_or_the_most_failed_event() -> None:
    first, second = events(2)
    verdict = Verdict([], [], [Pending(first, 1), Pending(second, 3)], "")
    assert backoff_step(verdict, outage_rounds=0) == 3
    assert backoff_step(verdict, outage_rounds=7) == 7


def test_retrying_is_counted_in_each_event_s_own_partition() -> None:
    waiting = [StoredEvent(n, n, p, envelope(f"o{n}")) for n, p in enumerate([3, 3, 7])]
    assert retrying_per_partition({3, 5, 7}, waiting) == {3: 2, 5: 0, 7: 1}
    assert sum(retrying_per_partition(range(16), waiting).values()) == 3


class Scripted:
    """A store that answers each attempt from a script; records every wait."""

    def __init__(self, answers: list[list[Delivery]], *, healthy: bool = True) -> None:
        self._answers: Iterator[list[Delivery]] = iter(answers)
        self.health = healthy
        self.applied: list[list[StoredEvent]] = []
        self.waits: list[tuple[float, set[int]]] = []
        self.reports: list[tuple[list[Pending], str]] = []
        self.keep_leases = True

    async def apply(self, batch: list[StoredEvent]) -> list[Delivery]:
        self.applied.append(batch)
        return next(self._answers)

    async def healthy(self) -> bool:
        return self.health

    async def wait(self, delay: float, partitions: set[int]) -> bool:
        self.waits.append((delay, partitions))
        return self.keep_leases

    async def report(self, retry: list[Pending], error: str) -> None:
        self.reports.append((retry, error))

    def retrier(self, max_attempts: int = 5) -> Retrier:
        return Retrier(
            apply=self.apply,
            healthy=self.healthy,
            wait=self.wait,
            report=self.report,
            backoff=Backoff(0.1, 1.0),
            max_attempts=max_attempts,
        )


async def test_failed_events_alone_are_tried_again_until_delivered() -> None:
    batch = events(3)
    store = Scripted([[DELIVERED], [DELIVERED]])

    outcome = await store.retrier().deliver(batch, [DELIVERED, TRANSIENT, DELIVERED])

    assert outcome is not None and outcome.dead == []
    assert sum(outcome.delivered.values()) == 3
    assert store.applied == [[batch[1]]]
    assert store.waits and store.waits[0][1] == {batch[1].partition}
    assert [len(retry) for retry, _ in store.reports] == [1]


async def test_an_event_failing_every_attempt_is_dead_lettered_after_max_attempts() -> None:
    batch = events(2)
    store = Scripted([[TRANSIENT]] * 3)

    outcome = await store.retrier(max_attempts=4).deliver(batch, [DELIVERED, TRANSIENT])

    assert outcome is not None
    [dead] = outcome.dead
    assert (dead.event, dead.reason, dead.attempts) == (batch[1], "attempts_exhausted", 4)
    assert len(store.applied) == 3


async def test_an_outage_uses_up_no_attempts_however_long() -> None:
    [event] = events(1)
    store = Scripted([[TRANSIENT]] * 20 + [[DELIVERED]], healthy=False)

    outcome = await store.retrier(max_attempts=2).deliver([event], [TRANSIENT])

    assert outcome is not None and outcome.dead == []
    assert sum(outcome.delivered.values()) == 1
    assert len(store.waits) == 21
    # The backoff grows with the outage's rounds, up to its cap.
    assert all(delay <= 1.0 for delay, _ in store.waits)


async def test_a_batch_is_given_up_when_a_lease_it_needs_is_lost() -> None:
    batch = events(2)
    store = Scripted([])
    store.keep_leases = False

    assert await store.retrier().deliver(batch, [DELIVERED, TRANSIENT]) is None
    assert store.applied == []


async def test_an_empty_batch_is_done_at_once() -> None:
    store = Scripted([])
    outcome = await store.retrier().deliver([], [])
    assert outcome is not None and not outcome.delivered and outcome.dead == []
