"""Where a batch is retried: the retry and dead-letter decision, and the loop that applies it.

Invariants kept here:

- Every event of a batch ends delivered or dead-lettered, or the batch is given up whole
  (its positions stay, so it is read and delivered again).
- A permanent failure is dead-lettered at once; a transient one is retried, and dead-lettered
  once it has failed ``max_attempts`` times.
- While the store is down (every event failed transiently and its health check fails), no
  attempt is counted: an outage, however long, dead-letters nothing.
- An event the sink held back untried, behind a failed earlier version of its aggregate, has
  no attempt counted: only an event's own failures bring it to the dead-letter limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from adapters.base import Delivery, Outcome
from gateway.backoff import Backoff
from gateway.postgres.outbox import StoredEvent
from gateway.relay.tables import DeadLetter


class Pending(NamedTuple):
    """An event still to deliver, and how many of its attempts have failed."""

    event: StoredEvent
    failures: int


@dataclass(frozen=True)
class Verdict:
    """What one attempt at a batch decided, event by event."""

    delivered: list[StoredEvent]
    dead: list[DeadLetter]
    retry: list[Pending]
    """The events to try again, with their failures counted."""
    last_error: str
    """The error of the last event to retry ("" if none)."""


def store_may_be_down(results: Sequence[Delivery]) -> bool:
    """Whether every event failed transiently: the store itself may be down (its health
    check decides)."""
    return bool(results) and all(r.outcome is Outcome.TRANSIENT for r in results)


def judge(
    pending: Sequence[Pending],
    results: Sequence[Delivery],
    *,
    max_attempts: int,
    store_down: bool,
) -> Verdict:
    """Sort an attempt's results: delivered, dead (permanent, or out of attempts), retried.

    With ``store_down`` the failed attempts are not counted, nor ever those of events held
    back untried.
    """
    delivered: list[StoredEvent] = []
    dead: list[DeadLetter] = []
    retry: list[Pending] = []
    last_error = ""
    for (event, failures), result in zip(pending, results, strict=True):
        error = result.error or ""
        if result.outcome is Outcome.DELIVERED:
            delivered.append(event)
        elif result.outcome is Outcome.PERMANENT:
            dead.append(DeadLetter(event, "permanent", error, failures + 1))
        elif store_down or not result.attempted:
            retry.append(Pending(event, failures))
            last_error = error
        elif failures + 1 >= max_attempts:
            dead.append(DeadLetter(event, "attempts_exhausted", error, failures + 1))
        else:
            retry.append(Pending(event, failures + 1))
            last_error = error
    return Verdict(delivered, dead, retry, last_error)


def backoff_step(verdict: Verdict, outage_rounds: int) -> int:
    """Which retry's backoff to wait: the outage's round while the store is down, else the
    most failed event's attempt."""
    if outage_rounds:
        return outage_rounds
    return max(pending.failures for pending in verdict.retry)


def retrying_per_partition(owned: Iterable[int], waiting: Iterable[StoredEvent]) -> dict[int, int]:
    """How many of the ``waiting`` events each owned partition holds (0 for the others)."""
    counts = dict.fromkeys(owned, 0)
    for event in waiting:
        counts[event.partition] = counts.get(event.partition, 0) + 1
    return counts


@dataclass(frozen=True)
class BatchOutcome:
    """A batch done with: events delivered per partition, and the dead letters."""

    delivered: Counter[int]
    dead: list[DeadLetter]


Apply = Callable[[list[StoredEvent]], Coroutine[Any, Any, list[Delivery]]]
Wait = Callable[[float, set[int]], Awaitable[bool]]
"""Waits a delay, holding the leases of the given partitions; False to give the batch up."""
Report = Callable[[list[Pending], str], Awaitable[None]]
"""Records what waits for a retry (for ``fanout status``)."""


@dataclass(frozen=True)
class Retrier:
    """Applies a batch until every event is delivered or dead, with backoff between tries."""

    apply: Apply
    healthy: Callable[[], Awaitable[bool]]
    wait: Wait
    report: Report
    backoff: Backoff
    max_attempts: int
    on_failure: Callable[[Outcome], None] = lambda outcome: None

    async def deliver(
        self, events: list[StoredEvent], first_results: list[Delivery]
    ) -> BatchOutcome | None:
        """The batch's outcome; None if it was given up (a stop, or a lease lost).

        ``first_results`` are the outcomes of the first attempt, made while the batch was in
        flight.
        """
        delivered: Counter[int] = Counter()
        dead: list[DeadLetter] = []
        pending = [Pending(event, 0) for event in events]
        results = first_results
        outage_rounds = 0
        while pending:
            for result in results:
                if result.outcome is not Outcome.DELIVERED:
                    self.on_failure(result.outcome)
            store_down = store_may_be_down(results) and not await self.healthy()
            verdict = judge(pending, results, max_attempts=self.max_attempts, store_down=store_down)
            delivered.update(event.partition for event in verdict.delivered)
            dead.extend(verdict.dead)
            if not verdict.retry:
                break
            outage_rounds = outage_rounds + 1 if store_down else 0
            await self.report(verdict.retry, verdict.last_error)
            delay = self.backoff.delay(backoff_step(verdict, outage_rounds))
            if not await self.wait(delay, {p.event.partition for p in verdict.retry}):
                return None
            pending = verdict.retry
            results = await self.apply([p.event for p in pending])
        return BatchOutcome(delivered, dead)
