"""A sink call that does not return: it times out as a transient failure, and a worker stuck
in one past its lease gives its partitions up to another relay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.base import Delivery, EventEnvelope
from adapters.memory import MemorySink
from gateway.postgres.outbox import PARTITIONS
from gateway.relay import Relay
from gateway.relay.leases import relays_serving
from gateway.relay.stalls import SinkCallWatch, keeps_leases
from support.eventually import eventually
from tests.unit.relay_fakes import InMemoryRelayStorage
from tests.unit.test_relay_worker import FAST, relay, running
from tests.wedged_sink import WedgedSink


def test_a_worker_with_no_sink_call_running_keeps_its_leases() -> None:
    assert keeps_leases(None, now=100.0, lease_ttl_seconds=10.0)


def test_a_call_within_its_timeout_or_late_by_less_than_a_lease_keeps_the_leases() -> None:
    assert keeps_leases(110.0, now=100.0, lease_ttl_seconds=10.0)
    assert keeps_leases(110.0, now=119.9, lease_ttl_seconds=10.0)


def test_a_call_late_by_a_lease_s_life_gives_the_leases_up() -> None:
    assert not keeps_leases(110.0, now=120.0, lease_ttl_seconds=10.0)
    assert not keeps_leases(110.0, now=500.0, lease_ttl_seconds=10.0)


async def test_the_watch_knows_the_earliest_deadline_of_the_calls_still_running() -> None:
    watch = SinkCallWatch(clock=lambda: 100.0)
    assert watch.earliest_deadline() is None
    with watch.call(timeout_seconds=30.0):
        with watch.call(timeout_seconds=5.0):
            assert watch.earliest_deadline() == 105.0
        assert watch.earliest_deadline() == 130.0
    assert watch.earliest_deadline() is None


class HangingSink(MemorySink):
    """A sink whose first ``hangs`` calls to ``apply`` never return (until cancelled)."""

    def __init__(self, name: str, hangs: int) -> None:
        super().__init__(name)
        self.hangs = hangs
        self.cancelled = 0

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        if self.hangs > 0:
            self.hangs -= 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().apply(batch)


async def test_an_apply_that_never_returns_times_out_and_is_retried_as_transient() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(20)
    hanging, other = HangingSink("hanging", hangs=2), MemorySink("other")

    async with running(relay(storage, hanging, other, apply_timeout_seconds=0.2)):
        await eventually(lambda: storage.delivered["other"] == 20, within=10)
        await eventually(lambda: storage.delivered["hanging"] == 20, within=10)

    assert hanging.cancelled == 2
    assert len(hanging.state) == 20 and len(other.state) == 20
    assert storage.dead_letters == []


async def test_a_sink_s_own_apply_timeout_overrides_the_relay_s() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(10)
    hanging = HangingSink("hanging", hangs=1)
    settings = FAST.model_copy(update={"apply_timeout_seconds": 3600})
    bounded = Relay(
        None, None, [hanging], settings, storage=storage, apply_timeouts={"hanging": 0.2}
    )

    async with running(bounded):
        await eventually(lambda: storage.delivered["hanging"] == 10, within=10)

    assert hanging.cancelled == 1


async def test_a_worker_wedged_past_its_lease_lets_another_relay_take_its_partitions() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(40)
    wedged = WedgedSink("slow")
    first = relay(storage, wedged, MemorySink("other"), apply_timeout_seconds=0.1)
    taker_sink = MemorySink("slow")
    second = relay(storage, taker_sink, MemorySink("other"), apply_timeout_seconds=0.1)
    async with running(first):
        try:
            await asyncio.wait_for(wedged.entered.wait(), 10)
            async with running(second):
                await eventually(
                    lambda: storage.owners("slow") == dict.fromkeys(PARTITIONS, second.instance_id),
                    within=15,
                )
                await eventually(lambda: len(taker_sink.state) == 40, within=10)
                await eventually(lambda: storage.delivered["slow"] == 40, within=10)
                # The first relay still serves its other sink: only the wedged worker gave up.
                await eventually(
                    lambda: (
                        set(storage.owners("other").values())
                        == {first.instance_id, second.instance_id}
                    ),
                    within=10,
                )
        finally:
            wedged.release.set()  # else the first relay cannot stop


def test_a_relay_stalled_on_a_sink_is_left_out_of_that_sink_s_split() -> None:
    assert relays_serving(["a", "b", "c"], {"b"}) == ["a", "c"]
    assert relays_serving(["a", "b"], frozenset()) == ["a", "b"]
