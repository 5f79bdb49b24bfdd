"""The Kafka sink's first sends, to topics it has just created, on a real broker: they are
delivered at once, without librdkafka's complaints of partitions that have no leader yet."""

from __future__ import annotations

import logging
import uuid

import pytest

from adapters.base import EventEnvelope, Outcome
from adapters.kafka import KafkaSink
from support.stores import order_event, started


def item_event(item_id: str) -> EventEnvelope:
    """An event of an aggregate type the sink has no topic for until it sees one."""
    return EventEnvelope(
        event_id=uuid.uuid4(),
        sequence=1,
        aggregate_type="item",
        aggregate_id=item_id,
        event_type="item.changed",
        version=1,
        payload={"id": item_id},
        headers={},
        occurred_at=order_event("o", 1).occurred_at,
    )


async def test_the_first_sends_to_new_topics_go_out_without_leader_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.kafka.librdkafka")
    orders = [order_event(str(uuid.uuid4()), 1) for _ in range(12)]
    items = [item_event(str(uuid.uuid4())) for _ in range(12)]

    async with started("kafka", partitions=6) as sink:
        assert isinstance(sink, KafkaSink)
        results = await sink.apply([*orders, *items])

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * len(orders + items)
    complaints = [r.getMessage() for r in caplog.records if r.name.startswith("adapters.kafka")]
    assert complaints == []
