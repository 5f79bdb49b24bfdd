"""The Kafka sink's decisions: sending rounds, error classes, when a producer is replaced and
when its successor may send, records, and the log check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    TopicAuthorizationFailedError,
    UnknownProducerId,
    UnknownTopicOrPartitionError,
)

from adapters.base import Outcome
from adapters.kafka import (
    KafkaSink,
    ProducerRemains,
    delivery_for,
    may_send,
    record_for,
    replaces_producer,
    waves,
)
from adapters.kafka_url import bootstrap_servers
from adapters.readback import PublishedEvent
from gateway.configuration.settings import load_settings
from gateway.errors import ConfigError
from gateway.operations.verify_log import LogOrder
from tests.unit.relay_fakes import envelope


def test_each_keys_records_go_out_one_round_after_another() -> None:
    assert waves(["a", "b", "a", "c", "a", "b"]) == [[0, 1, 3], [2, 5], [4]]
    assert waves([]) == []
    assert waves(["a", "b"]) == [[0, 1]]


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (MessageSizeTooLargeError("too big"), Outcome.PERMANENT),
        (TopicAuthorizationFailedError(), Outcome.PERMANENT),
        (KafkaTimeoutError(), Outcome.TRANSIENT),  # not flagged retriable by the client
        (KafkaConnectionError("refused"), Outcome.TRANSIENT),
        (NotLeaderForPartitionError(), Outcome.TRANSIENT),
        (UnknownTopicOrPartitionError(), Outcome.TRANSIENT),
        (RuntimeError("unforeseen"), Outcome.TRANSIENT),
    ],
)
def test_only_errors_about_the_record_itself_are_permanent(
    error: BaseException, outcome: Outcome
) -> None:
    delivery = delivery_for(error)
    assert delivery.outcome is outcome
    assert type(error).__name__ in (delivery.error or "")


@pytest.mark.parametrize(
    ("error", "replaced"),
    [
        (OutOfOrderSequenceNumber(), True),
        (UnknownProducerId(), True),
        (ProducerFenced(), True),
        (ProducerClosed(), True),
        (None, False),
        (KafkaTimeoutError(), False),  # the broker is slow, the producer is fine
        (KafkaConnectionError("refused"), False),
        (MessageSizeTooLargeError("too big"), False),
    ],
)
def test_only_errors_that_leave_the_producer_unusable_replace_it(
    error: BaseException | None, replaced: bool
) -> None:
    assert replaces_producer(error) is replaced


def test_a_new_producer_sends_only_once_every_producer_it_replaces_has_stopped() -> None:
    stopped = ProducerRemains(sender_running=False, open_connections=0)
    assert may_send([])
    assert may_send([stopped, stopped])
    assert not may_send([stopped, ProducerRemains(sender_running=True, open_connections=0)])
    assert not may_send([ProducerRemains(sender_running=False, open_connections=1)])
    assert not may_send([ProducerRemains(sender_running=True, open_connections=2)])


def test_a_kafka_url_names_its_brokers() -> None:
    assert bootstrap_servers("kafka://a:9092,b:9093/") == ["a:9092", "b:9093"]
    with pytest.raises(ValueError, match="kafka://"):
        bootstrap_servers("http://a:9092")
    with pytest.raises(ValueError, match="names no broker"):
        bootstrap_servers("kafka://")


@pytest.mark.parametrize(
    "url",
    [
        "kafka://admin:s3cr3t-KAFKA@127.0.0.1:9092",
        "kafka://b1:9092,admin:s3cr3t-KAFKA@b2:9092",
        "kafka://:s3cr3t-KAFKA@b1:9092",
        "kafka://s3cr3t-KAFKA@b1:9092",
        "kafkax://admin:s3cr3t-KAFKA@b1:9092",
    ],
)
def test_a_kafka_url_with_credentials_is_refused_without_repeating_them(
    url: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError) as raised:
        bootstrap_servers(url)
    assert "s3cr3t" not in str(raised.value)

    config = tmp_path / "gateway.yaml"
    config.write_text(
        "postgres: {url: 'postgresql://u@h/db'}\n"
        f"sinks: {{events: {{type: kafka, url: '{url}'}}}}\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert str(refused.value).startswith("sinks.events.url: ")
    assert str(config) in str(refused.value)
    assert "s3cr3t" not in str(refused.value)


def test_a_kafka_url_says_it_takes_no_credentials(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no user name or password"):
        bootstrap_servers("kafka://admin:pw@b1:9092")


def test_a_record_is_keyed_by_aggregate_with_the_event_in_its_headers() -> None:
    event = envelope("order-7", version=3, status="shipped")
    record = record_for(event._replace(headers={"trace": "t-1"}), "fanout.order")
    headers = dict(record.headers)
    assert record.topic == "fanout.order"
    assert record.key == b"order-7"
    assert json.loads(record.value) == event.payload
    assert headers["event_id"] == str(event.event_id).encode()
    assert headers["version"] == b"3"
    assert headers["event_type"] == event.event_type.encode()
    assert headers["aggregate_type"] == b"order"
    assert headers["trace"] == b"t-1"
    assert record.timestamp_ms == int(event.occurred_at.timestamp() * 1000)


def test_topics_follow_the_aggregate_type_unless_mapped() -> None:
    sink = KafkaSink("k", "kafka://127.0.0.1:1", topic_prefix="shop.", topics={"audit": None})
    assert sink.topic_for("order") == "shop.order"
    assert sink.topic_for("audit") is None
    mapped = KafkaSink("k", "kafka://127.0.0.1:1", topics={"order": "orders-v2"})
    assert mapped.topic_for("order") == "orders-v2"


def published(key: str, version: int, event_id: str) -> PublishedEvent:
    return PublishedEvent("t", 0, key, event_id, version)


def test_the_log_check_tells_repeats_and_inversions_apart() -> None:
    order = LogOrder()
    assert order.observe(published("a", 1, "e1")) == "in_order"
    assert order.observe(published("a", 2, "e2")) == "in_order"
    assert order.observe(published("b", 1, "e3")) == "in_order"
    assert order.observe(published("a", 1, "e1")) == "repeat"
    assert order.observe(published("a", 4, "e4")) == "in_order"
    assert order.observe(published("a", 3, "e5")) == "out_of_order"


def test_a_kafka_url_of_another_scheme_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "postgres: {url: 'postgresql://u@h/db'}\n"
        "sinks:\n  events: {type: kafka, url: 'http://127.0.0.1:9092'}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert "sinks.events.url" in str(raised.value)
    assert str(config) in str(raised.value)
