"""The AsyncAPI document of the events on Kafka: a message for every event the gateway appends,
each channel at the topic the Kafka sink publishes to, and records as the sink builds them
conforming to their message (and one with a field the contract lacks refused). No I/O."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.kafka import KafkaSink, record_for
from gateway.cli import app
from gateway.configuration.settings import Settings
from gateway.contract.asyncapi import KafkaTarget, asyncapi_document, kafka_targets
from gateway.contract.messages import AGGREGATES, MESSAGES
from gateway.contract.payloads import OrderCancelledPayload
from gateway.errors import ValidationError
from gateway.payments.recording import FAILURE_REASON, TIMEOUT_REASON
from gateway.sharding.reservations import (
    INVENTORY_RESERVED,
    INVENTORY_RETAKEN,
    RESERVATION_AGGREGATE,
    Settlement,
)
from gateway.write_path.customers import CUSTOMER_AGGREGATE, CUSTOMER_CREATED
from gateway.write_path.lifecycle import (
    INVENTORY_RELEASED,
    ORDER_CANCELLED,
    ORDER_PLACED,
    ORDER_SNAPSHOT,
    ORDER_STATUS_CHANGED,
    ORDER_STREAM_EVENTS,
    PAYMENT_PROCESSED,
)
from gateway.write_path.models import Order
from gateway.write_path.orders import ORDER_AGGREGATE, CustomerSummary, as_envelope, order_event
from tests.asyncapi_conformance import Conformance, PublishedRecord

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def event_types_of(aggregate_type: str) -> set[str]:
    return {m.event_type for m in MESSAGES if m.aggregate_type == aggregate_type}


def test_every_event_the_gateway_appends_has_its_message() -> None:
    assert event_types_of(ORDER_AGGREGATE) == ORDER_STREAM_EVENTS | {ORDER_SNAPSHOT}
    assert event_types_of(CUSTOMER_AGGREGATE) == {CUSTOMER_CREATED}
    settled = {s.event_type for s in Settlement if s.event_type is not None}
    assert event_types_of(RESERVATION_AGGREGATE) == {INVENTORY_RESERVED, INVENTORY_RETAKEN} | (
        settled
    )
    assert {m.aggregate_type for m in MESSAGES} == {a.type for a in AGGREGATES}
    assert len({m.id for m in MESSAGES}) == len(MESSAGES)
    assert len({(m.aggregate_type, m.event_type) for m in MESSAGES}) == len(MESSAGES)


def test_the_cancellation_reasons_are_those_the_payments_write() -> None:
    schema = OrderCancelledPayload.model_json_schema()
    assert set(schema["properties"]["reason"]["enum"]) == {FAILURE_REASON, TIMEOUT_REASON}


@pytest.mark.parametrize(
    ("prefix", "topics"),
    [
        ("fanout.", {}),
        ("shop-", {"customer": "people"}),
        ("", {"reservation": None, "order": "orders.v1"}),
    ],
)
def test_each_channel_is_at_the_topic_the_sink_publishes_to(
    prefix: str, topics: dict[str, str | None]
) -> None:
    sink = KafkaSink("events", "kafka://broker:9092", topic_prefix=prefix, topics=topics)
    document = asyncapi_document([KafkaTarget("events", prefix, topics)], "1.2.3")

    published = {a.type: sink.topic_for(a.type) for a in AGGREGATES}
    assert {name: c["address"] for name, c in document["channels"].items()} == {
        name: topic for name, topic in published.items() if topic is not None
    }
    for name, channel in document["channels"].items():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
        operation = document["operations"][f"send-{name}-events"]
        assert operation["channel"] == {"$ref": f"#/channels/{name}"}
        assert len(operation["messages"]) == len(channel["messages"])
    assert set(document["operations"]) == {f"send-{name}-events" for name in document["channels"]}


def settings_with(sinks: dict[str, Any]) -> Settings:
    return Settings.model_validate({"postgres": {"url": "postgresql://u@db/x"}, "sinks": sinks})


KAFKA = {"type": "kafka", "url": "kafka://k1:9092,k2:9093", "topic_prefix": "shop."}


def test_the_document_describes_the_configured_kafka_sink_and_its_brokers() -> None:
    settings = settings_with({"memory": {"type": "memory"}, "events": KAFKA})

    document = asyncapi_document(kafka_targets(settings), "1.2.3")

    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == "1.2.3"
    assert document["servers"] == {
        "events-1": {
            "host": "k1:9092",
            "protocol": "kafka",
            "description": "A broker of the Kafka sink 'events'.",
        },
        "events-2": {
            "host": "k2:9093",
            "protocol": "kafka",
            "description": "A broker of the Kafka sink 'events'.",
        },
    }
    assert document["channels"]["order"]["address"] == "shop.order"
    assert document["channels"]["order"]["servers"] == [
        {"$ref": "#/servers/events-1"},
        {"$ref": "#/servers/events-2"},
    ]


def test_without_a_kafka_sink_the_defaults_are_described_with_no_servers() -> None:
    document = asyncapi_document(kafka_targets(settings_with({"m": {"type": "memory"}})), "1")

    assert "servers" not in document
    assert document["channels"]["order"]["address"] == "fanout.order"


def test_every_enabled_kafka_sink_has_its_channels_and_servers_unless_one_is_named() -> None:
    other = {**KAFKA, "url": "kafka://k3:9092", "topic_prefix": "audit."}
    settings = settings_with({"events": KAFKA, "audit": other, "off": {**other, "enabled": False}})

    both = asyncapi_document(kafka_targets(settings), "1")
    named = asyncapi_document(kafka_targets(settings, "off"), "1")

    assert set(both["servers"]) == {"audit", "events-1", "events-2"}
    assert both["channels"]["audit-order"]["address"] == "audit.order"
    assert both["channels"]["audit-order"]["servers"] == [{"$ref": "#/servers/audit"}]
    assert both["channels"]["events-customer"]["address"] == "shop.customer"
    assert len(both["channels"]) == 2 * len(AGGREGATES)
    assert set(named["servers"]) == {"off"} and named["channels"]["order"]["address"] == (
        "audit.order"
    )
    with pytest.raises(ValidationError, match=r"'memory' is no Kafka sink") as refused:
        kafka_targets(settings, "memory")
    assert refused.value.errors[0].field == "sink"


def order(**changes: Any) -> Order:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "order_number": "ORD-1",
        "customer_id": uuid.uuid4(),
        "status": "pending",
        "subtotal": Decimal("20.00"),
        "tax_amount": Decimal("0.00"),
        "shipping_amount": Decimal("0.00"),
        "total_amount": Decimal("20.00"),
        "currency": "USD",
        "billing_address_id": uuid.uuid4(),
        "shipping_address_id": None,
        "customer_segment": None,
        "metadata": {"channel": "web"},
        "notes": None,
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
        "payment_status": "awaiting",
        "payment_due_at": NOW,
        "items": [
            {
                "id": uuid.uuid4(),
                "product_id": uuid.uuid4(),
                "product_name": "Lamp",
                "product_sku": "LAMP-1",
                "quantity": 2,
                "unit_price": Decimal("10.00"),
                "total_price": Decimal("20.00"),
            }
        ],
    }
    return Order.model_validate(base | changes)


CUSTOMER = CustomerSummary(uuid.uuid4(), "ada@example.com", "Ada", "Lovelace")
PAYMENT = {
    "payment_id": "pay_1",
    "status": "succeeded",
    "amount": "20.00",
    "currency": "USD",
    "occurred_at": NOW.isoformat(),
    "outcome": "confirmed",
}


def published(
    event_type: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> PublishedRecord:
    """An order event as the write path builds it, as the Kafka sink publishes it."""
    event = order_event(order(), event_type, CUSTOMER, headers=headers, details=details)
    record = record_for(as_envelope(event, 1, NOW), "fanout.order")
    return PublishedRecord(record.topic, record.key, record.value, record.headers)


CONFORMANCE = Conformance(asyncapi_document([KafkaTarget()], "1"))


@pytest.mark.parametrize(
    ("event_type", "details", "headers"),
    [
        (ORDER_PLACED, None, {"idempotency_key": "key-1"}),
        (ORDER_PLACED, None, None),
        (ORDER_STATUS_CHANGED, {"previous_status": "pending"}, None),
        (ORDER_CANCELLED, {"previous_status": "pending", "reason": "payment_timeout"}, None),
        (PAYMENT_PROCESSED, {"payment": PAYMENT}, None),
        (
            INVENTORY_RELEASED,
            {"released": [{"product_id": str(uuid.uuid4()), "quantity": 2}]},
            None,
        ),
        (ORDER_SNAPSHOT, None, {"backfill": "true"}),
    ],
)
def test_an_order_event_as_the_sink_publishes_it_conforms(
    event_type: str, details: dict[str, Any] | None, headers: dict[str, str] | None
) -> None:
    assert CONFORMANCE.problems(published(event_type, details, headers)) == []


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (
            published(ORDER_PLACED, {"discount": "5.00"}),
            "payload at /: Additional properties are not allowed ('discount' was unexpected)",
        ),
        (
            published(ORDER_STATUS_CHANGED),
            'payload at /: "previous_status" is a required property',
        ),
        (
            published(ORDER_CANCELLED, {"previous_status": "pending", "reason": "changed mind"}),
            "payload at /reason",
        ),
        (published(ORDER_PLACED, None, {"trace": "t-1"}), "headers at /: Additional properties"),
        (published("order.renamed"), "no message 'order.renamed' on a channel at 'fanout.order'"),
    ],
)
def test_a_record_the_contract_does_not_state_is_refused(
    record: PublishedRecord, problem: str
) -> None:
    problems = CONFORMANCE.problems(record)
    assert any(p.startswith(problem) for p in problems), problems


def test_a_header_or_key_of_the_wrong_form_is_refused() -> None:
    record = published(ORDER_PLACED)
    headers = [(n, b"0" if n == "version" else v) for n, v in record.headers]
    problems = CONFORMANCE.problems(
        PublishedRecord(record.topic, b"not-an-id", record.value, headers)
    )
    assert any(p.startswith("headers at /version") for p in problems), problems
    assert any(p.startswith("key at /") for p in problems), problems


def test_fanout_asyncapi_prints_or_writes_the_document(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        json.dumps({"postgres": {"url": "postgresql://u@db/x"}, "sinks": {"events": KAFKA}})
    )
    runner = CliRunner()

    printed = runner.invoke(app, ["--config", str(config), "asyncapi"])
    written = runner.invoke(
        app, ["--config", str(config), "asyncapi", "--output", str(tmp_path / "a.json")]
    )
    wrong = runner.invoke(app, ["--config", str(config), "asyncapi", "--sink", "nope"])

    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.stdout)
    assert document["servers"]["events-1"]["host"] == "k1:9092"
    assert written.exit_code == 0, written.output
    assert json.loads((tmp_path / "a.json").read_text()) == document
    assert wrong.exit_code == 1
    assert "'nope' is no Kafka sink" in wrong.stderr
