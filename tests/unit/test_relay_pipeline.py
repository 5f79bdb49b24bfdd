"""Where a position moves: the rules of a sink's batches between read and commit."""

from __future__ import annotations

from collections import Counter

from gateway.postgres.outbox import StoredEvent
from gateway.relay.pipeline import (
    InFlight,
    keep_reading,
    position_moves,
    positions_outdated,
    read_after,
    undelivered,
)
from gateway.relay.tables import Move
from tests.unit.relay_fakes import envelope


def event(txid: int, partition: int) -> StoredEvent:
    return StoredEvent(txid, txid, partition, envelope(f"o{txid}"))


def batch(*events: StoredEvent, partitions: tuple[int, ...] = (0, 1)) -> InFlight:
    return InFlight(list(events), list(events), partitions, None)


def test_the_next_batch_is_read_after_the_last_in_flight_else_from_the_lowest_position() -> None:
    positions = {0: (7, 7), 1: (3, 3)}
    assert read_after([], positions, (0, 1)) == (3, 3)
    in_flight = [batch(event(4, 0), event(9, 1))]
    assert read_after(in_flight, positions, (0, 1)) == (9, 9)


def test_events_a_partition_has_passed_are_not_delivered_again() -> None:
    events = [event(4, 0), event(5, 1), event(8, 0), event(9, 1)]
    positions = {0: (7, 7), 1: (3, 3)}
    fresh = undelivered(events, positions, after=(3, 3))
    assert [e.position for e in fresh] == [(5, 5), (8, 8), (9, 9)]
    # Read after every partition's position: nothing to filter.
    assert undelivered(events, positions, after=(7, 7)) == events


def test_a_batch_moves_each_held_partition_forward_from_its_position_to_its_last_event() -> None:
    done = batch(event(4, 0), event(9, 1), partitions=(0, 1, 2, 3))
    positions = {0: (3, 3), 1: (3, 3), 2: (12, 12)}  # 3 is no longer held
    moves = position_moves(done, positions, Counter({0: 1, 1: 1}))
    assert moves == {0: Move((9, 9), 1, since=(3, 3)), 1: Move((9, 9), 1, since=(3, 3))}
    # A partition with nothing in the batch still moves past it (nothing of it was there).
    assert position_moves(done, {0: (3, 3)}, Counter()) == {0: Move((9, 9), 0, since=(3, 3))}


def test_the_next_batch_is_read_before_the_oldest_is_finished_only_after_a_full_one() -> None:
    assert keep_reading(full=True, in_flight=1, batches_in_flight=2)
    assert not keep_reading(full=True, in_flight=2, batches_in_flight=2)
    assert not keep_reading(full=False, in_flight=1, batches_in_flight=2)
    assert not keep_reading(full=True, in_flight=1, batches_in_flight=1)


def test_positions_are_outdated_once_the_server_changed_or_a_batch_came_from_another() -> None:
    assert not positions_outdated(seen=2, now=2, read_at=None)
    assert not positions_outdated(seen=2, now=2, read_at=2)
    assert positions_outdated(seen=2, now=3, read_at=2)  # a failover since
    assert positions_outdated(seen=2, now=2, read_at=1)  # a batch the old primary answered
    assert positions_outdated(seen=2, now=3, read_at=None)
