"""The Kafka sink's decisions: sending rounds, error classes, when a producer is replaced and
when its successor may send, records, and the log check."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from adapters.base import Outcome
from adapters.kafka import KafkaSink, record_for, waves
from adapters.kafka_errors import delivery_for, replaces_producer
from adapters.kafka_producer import ProducerRemains, may_send, producer_config
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


def error(code: int, *, fatal: bool = False) -> KafkaError:
    return KafkaError(code, "what the client said", fatal=fatal)


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (error(KafkaError.MSG_SIZE_TOO_LARGE), Outcome.PERMANENT),
        (KafkaException(error(KafkaError.MSG_SIZE_TOO_LARGE)), Outcome.PERMANENT),  # produce()
        (error(KafkaError.RECORD_LIST_TOO_LARGE), Outcome.PERMANENT),
        (error(KafkaError.TOPIC_EXCEPTION), Outcome.PERMANENT),  # an invalid topic name
        (error(KafkaError.TOPIC_AUTHORIZATION_FAILED), Outcome.PERMANENT),
        (error(KafkaError.INVALID_MSG), Outcome.PERMANENT),  # a corrupt record
        (error(KafkaError.INVALID_TIMESTAMP), Outcome.PERMANENT),
        (error(KafkaError.POLICY_VIOLATION), Outcome.PERMANENT),
        (error(KafkaError._MSG_TIMED_OUT), Outcome.TRANSIENT),  # not flagged retriable
        (error(KafkaError._TIMED_OUT), Outcome.TRANSIENT),
        (error(KafkaError._TRANSPORT), Outcome.TRANSIENT),  # a broker down
        (error(KafkaError._ALL_BROKERS_DOWN), Outcome.TRANSIENT),
        (error(KafkaError.NOT_LEADER_FOR_PARTITION), Outcome.TRANSIENT),
        (error(KafkaError.UNKNOWN_TOPIC_OR_PART), Outcome.TRANSIENT),  # a topic just created
        (error(KafkaError._UNKNOWN_TOPIC), Outcome.TRANSIENT),
        (error(KafkaError._PURGE_INFLIGHT), Outcome.TRANSIENT),  # failed by a producer closed
        (BufferError("Local: Queue full"), Outcome.TRANSIENT),
        (RuntimeError("unforeseen"), Outcome.TRANSIENT),
    ],
)
def test_only_errors_about_the_record_itself_are_permanent(
    failure: BaseException | KafkaError, outcome: Outcome
) -> None:
    delivery = delivery_for(failure)
    assert delivery.outcome is outcome
    name = failure.name() if isinstance(failure, KafkaError) else type(failure).__name__
    if isinstance(failure, KafkaException):
        name = failure.args[0].name()
    assert (delivery.error or "").startswith(f"{name}: ")


@pytest.mark.parametrize(
    ("failure", "replaced"),
    [
        (error(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER), True),
        (error(KafkaError.UNKNOWN_PRODUCER_ID), True),
        (error(KafkaError.PRODUCER_FENCED), True),
        (error(KafkaError.INVALID_PRODUCER_EPOCH), True),
        (error(KafkaError._FATAL, fatal=True), True),
        (error(KafkaError.CLUSTER_AUTHORIZATION_FAILED, fatal=True), True),  # flagged fatal
        (error(KafkaError._DESTROY), True),  # the producer was closed
        (None, False),
        (error(KafkaError._MSG_TIMED_OUT), False),  # the broker is slow, the producer is fine
        (error(KafkaError._TRANSPORT), False),
        (error(KafkaError.MSG_SIZE_TOO_LARGE), False),
        (RuntimeError("unforeseen"), False),
    ],
)
def test_only_errors_that_leave_the_producer_unusable_replace_it(
    failure: BaseException | KafkaError | None, replaced: bool
) -> None:
    assert replaces_producer(failure) is replaced


def test_the_producer_is_idempotent_acknowledged_by_all_replicas_and_bounded_in_time() -> None:
    config = producer_config(
        ["b1:9092", "b2:9092"],
        compression="lz4",
        linger_ms=5,
        max_request_bytes=2048,
        timeout_seconds=3,
        logger=logging.getLogger("test"),
    )
    assert config["bootstrap.servers"] == "b1:9092,b2:9092"
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert 1 <= config["max.in.flight.requests.per.connection"] <= 5  # idempotence's limit
    assert config["compression.type"] == "lz4"
    assert config["linger.ms"] == 5
    assert config["message.max.bytes"] == 2048
    assert config["request.timeout.ms"] == 3000
    # A send not acknowledged within the sink's timeout stays queued for its retry, boundedly.
    assert 3000 < config["message.timeout.ms"] <= 60_000
    # The Java client's partitioner (and the earlier aiokafka sink's): keys keep their partition.
    assert config["partitioner"] == "murmur2_random"


def test_a_new_producer_sends_only_once_every_producer_it_replaces_has_stopped() -> None:
    stopped = ProducerRemains(polling=False, closed=True)
    assert may_send([])
    assert may_send([stopped, stopped])
    assert not may_send([stopped, ProducerRemains(polling=True, closed=True)])
    assert not may_send([ProducerRemains(polling=False, closed=False)])
    assert not may_send([ProducerRemains(polling=True, closed=False)])


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
