"""Where leases are taken: the block each relay holds, and a worker's leases in memory."""

from __future__ import annotations

import asyncio

from gateway.backoff import Backoff
from gateway.configuration.settings import RelaySettings
from gateway.postgres.outbox import PARTITIONS
from gateway.relay.context import WorkerContext
from gateway.relay.leases import SinkLeases, lease_changes, partitions_for
from gateway.relay.read_ahead import OutboxReads
from gateway.relay.tables import Move
from tests.unit.relay_fakes import InMemoryRelayStorage


def test_live_relays_split_the_partitions_into_balanced_blocks_covering_each_once() -> None:
    for count in range(1, 17):
        relays = [f"relay-{n:02d}" for n in range(count)]
        blocks = [partitions_for(relay, relays) for relay in reversed(relays)]
        assert sorted(p for block in blocks for p in block) == list(PARTITIONS)
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_a_relay_not_yet_in_the_live_list_counts_itself() -> None:
    assert partitions_for("b", ["a"]) == set(range(8, 16))
    assert partitions_for("a", []) == set(PARTITIONS)
    assert partitions_for("a", ["a", "b", "c"]) == set(range(0, 5))


def test_what_is_held_outside_the_block_is_released_and_the_rest_claimed() -> None:
    changes = lease_changes(held={0, 1, 2, 9}, target={0, 1, 2, 3})
    assert changes.release == {9}
    assert changes.claim == {3}
    assert lease_changes({1}, {1}).release == lease_changes({1}, {1}).claim == frozenset()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def context(storage: InMemoryRelayStorage, instance: str, live: list[str]) -> WorkerContext:
    settings = RelaySettings(lease_ttl_seconds=10)
    return WorkerContext(
        storage=storage,
        reads=OutboxReads(storage.read_batch, 10, 1),
        settings=settings,
        backoff=Backoff(0.01, 0.1),
        instance_id=instance,
        stopping=asyncio.Event(),
        live_instances=lambda: live,
    )


async def test_two_relays_rebalance_into_their_blocks_and_know_their_positions() -> None:
    clock = Clock()
    storage = InMemoryRelayStorage(clock=clock)
    await storage.register_sink("s", from_beginning=True)
    live = ["a"]
    first = SinkLeases("s", context(storage, "a", live))
    await first.rebalance()
    assert first.owned == set(PARTITIONS)
    assert first.positions == dict.fromkeys(PARTITIONS, (0, 0))

    live.append("b")
    second = SinkLeases("s", context(storage, "b", live))
    await second.rebalance()
    assert second.owned == set()  # "a" still holds them
    await first.rebalance()
    await second.rebalance()
    assert first.owned == set(range(8)) and set(first.positions) == set(range(8))
    assert second.owned == set(range(8, 16))
    assert storage.owners("s") == {p: "a" if p < 8 else "b" for p in PARTITIONS}


async def test_a_lease_taken_by_another_relay_is_forgotten_at_the_next_renewal() -> None:
    storage = InMemoryRelayStorage()
    await storage.register_sink("s", from_beginning=True)
    leases = SinkLeases("s", context(storage, "a", ["a"]))
    await leases.rebalance()
    storage.steal("s", 5, "b")

    await leases.renew()

    assert 5 not in leases.owned and 5 not in leases.positions
    assert len(leases.owned) == 15


async def test_a_lease_another_relay_took_once_it_expired_is_not_renewed() -> None:
    clock = Clock()
    storage = InMemoryRelayStorage(clock=clock)
    await storage.register_sink("s", from_beginning=True)
    leases = SinkLeases("s", context(storage, "a", ["a"]))
    await leases.rebalance()
    clock.now += 11
    await storage.claim_leases("s", "b", list(PARTITIONS), 10)
    await leases.renew()
    assert leases.owned == set()


async def test_renewal_is_due_a_third_of_a_lease_after_the_last() -> None:
    storage = InMemoryRelayStorage()
    await storage.register_sink("s", from_beginning=True)
    leases = SinkLeases("s", context(storage, "a", ["a"]))
    assert leases.due()
    await leases.rebalance()
    assert not leases.due()
    leases.check_soon()
    assert leases.due()


async def test_positions_move_in_memory_only_by_a_batch_s_moves() -> None:
    storage = InMemoryRelayStorage()
    await storage.register_sink("s", from_beginning=True)
    leases = SinkLeases("s", context(storage, "a", ["a"]))
    await leases.rebalance()
    leases.advance({3: Move((9, 9), 2)})
    assert leases.positions[3] == (9, 9) and leases.positions[4] == (0, 0)
    leases.forget()
    assert leases.owned == set() and leases.positions == {}


async def test_a_partition_lost_and_claimed_again_resumes_from_its_stored_position() -> None:
    clock = Clock()
    storage = InMemoryRelayStorage(clock=clock)
    await storage.register_sink("s", from_beginning=True)
    leases = SinkLeases("s", context(storage, "a", ["a"]))
    await leases.rebalance()
    moved = {5: Move((7, 70), 3)}
    assert await storage.commit_batch("s", "a", moved, [])
    leases.advance(moved)

    # Its leases expire; another relay takes and gives back every partition; an operator
    # rewinds partition 5 meanwhile (no lease is live).
    clock.now += 11
    assert await storage.claim_leases("s", "b", list(PARTITIONS), 10) == set(PARTITIONS)
    await storage.release_leases("s", "b", list(PARTITIONS))
    storage.rewind("s", {5: (0, 0)})
    await leases.rebalance()

    assert leases.owned == set(PARTITIONS)
    assert leases.positions[5] == (0, 0)
