"""The AsyncAPI 3.0 document of the events the Kafka sink publishes: the contract for consumers.

One channel per aggregate type (its topic, with the sink's prefix or mapping), one message per
event type with the JSON Schema of its payload and of its headers, and the record's key; the
servers are the sink's brokers. Everything comes from the models of :mod:`gateway.contract`,
which a test validates real published records against.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic.json_schema import models_json_schema

from adapters.kafka_topics import topic_for
from adapters.kafka_url import bootstrap_servers
from gateway.configuration.settings import KafkaSinkSettings, Settings
from gateway.contract.messages import AGGREGATES, MESSAGES, EventMessage
from gateway.errors import ValidationError

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEFAULT_TOPIC_PREFIX: str = KafkaSinkSettings.model_fields["topic_prefix"].default
SCHEMAS = "#/components/schemas/"

DESCRIPTION = """\
The events the fan-out gateway publishes on Kafka, for other services to consume. This \
document is the contract: `fanout asyncapi` prints it, and `GET /asyncapi.json` serves it.

- **Topics.** Each event goes to its aggregate type's topic (`<topic_prefix><aggregate type>` \
unless the sink's `topics` maps the type elsewhere, or to nothing): one channel each below.
- **Key.** The aggregate's id, so one aggregate's events share a partition (murmur2 of the \
key, the Java client's partitioner).
- **Value.** The event's payload as JSON (UTF-8), described per event type below.
- **Headers.** UTF-8 text: `event_id`, `event_type`, `aggregate_type`, `version`, \
`occurred_at`, and the event's own headers; the record's timestamp is `occurred_at`.
- **Order.** Each aggregate's records come in version order within its partition.
- **Delivery.** At least once: a record may repeat; drop those whose `event_id` (or whose \
`version`, per key) you have seen.

Events a service embedding the gateway appends with `Gateway.publish` go to \
`<topic_prefix><aggregate type>` too, with the same key and headers; their payloads are that \
service's own and are not described here.
"""


@dataclass(frozen=True)
class KafkaTarget:
    """The Kafka sink a document describes: how it names topics, and its brokers."""

    sink: str | None = None
    """The sink's name (``None``: no Kafka sink configured; the defaults are described)."""
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    topics: Mapping[str, str | None] = field(default_factory=dict)
    brokers: tuple[str, ...] = ()

    def topic_for(self, aggregate_type: str) -> str | None:
        """The topic of an aggregate type's events (None: not published), by the Kafka sink's
        rule."""
        return topic_for(aggregate_type, self.topic_prefix, self.topics)

    @classmethod
    def of(cls, name: str, settings: KafkaSinkSettings) -> KafkaTarget:
        """The target a configured Kafka sink publishes to."""
        return cls(
            sink=name,
            topic_prefix=settings.topic_prefix,
            topics=dict(settings.topics),
            brokers=tuple(bootstrap_servers(settings.url.get_secret_value())),
        )


def kafka_targets(settings: Settings, sink: str | None = None) -> list[KafkaTarget]:
    """The Kafka sink named ``sink``; else every enabled one, by name; else (none configured)
    the defaults. Raises ``ValidationError`` (field ``sink``) for a name that is no Kafka
    sink of ``settings``."""
    kafka = {
        name: section
        for name, section in settings.sinks.items()
        if isinstance(section, KafkaSinkSettings)
    }
    if sink is not None:
        if sink not in kafka:
            known = ", ".join(sorted(kafka)) or "none configured"
            raise ValidationError.single(
                "sink", f"{sink!r} is no Kafka sink of the configuration (Kafka sinks: {known})"
            )
        return [KafkaTarget.of(sink, kafka[sink])]
    enabled = [KafkaTarget.of(n, s) for n, s in sorted(kafka.items()) if s.enabled]
    return enabled or [KafkaTarget()]


def asyncapi_document(targets: Sequence[KafkaTarget], version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of what ``targets`` publish; ``version`` is the gateway's.

    One target's channels are named after the aggregate types (``order``); with several,
    after the sink and the type (``events-order``), each listing its sink's servers."""
    references, definitions = models_json_schema(
        [(message.payload, "serialization") for message in MESSAGES],
        ref_template=SCHEMAS + "{model}",
    )
    servers: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for target in targets:
        own_servers = _servers(target)
        servers |= own_servers
        for aggregate in AGGREGATES:
            topic = target.topic_for(aggregate.type)
            if topic is None:
                continue
            name = aggregate.type if len(targets) == 1 else f"{target.sink}-{aggregate.type}"
            mine = [m for m in MESSAGES if m.aggregate_type == aggregate.type]
            channels[name] = {
                "address": topic,
                "title": aggregate.title,
                "description": aggregate.description,
                "messages": {m.id: {"$ref": f"#/components/messages/{m.id}"} for m in mine},
                "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
            }
            if own_servers:
                channels[name]["servers"] = [{"$ref": f"#/servers/{s}"} for s in own_servers]
            operations[f"send-{name}-events"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"The relay publishes every {aggregate.type} event on {topic}.",
                "messages": [{"$ref": f"#/channels/{name}/messages/{m.id}"} for m in mine],
            }
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:fanout-gateway:events",
        "info": {
            "title": "fanout gateway events",
            "version": version,
            "description": DESCRIPTION,
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "defaultContentType": "application/json",
    }
    if servers:
        document["servers"] = servers
    document["channels"] = channels
    document["operations"] = operations
    document["components"] = {
        "messages": {m.id: _message(m, references[(m.payload, "serialization")]) for m in MESSAGES},
        "schemas": definitions.get("$defs", {}),
    }
    return document


def _message(message: EventMessage, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": message.event_type,
        "title": message.event_type,
        "summary": message.summary,
        "contentType": "application/json",
        "headers": _headers(message),
        "payload": payload,
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "format": "uuid",
                    "description": f"The {message.aggregate_type}'s id (the aggregate id).",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _headers(message: EventMessage) -> dict[str, Any]:
    """The JSON Schema of a message's headers, its type and aggregate type fixed."""
    schema = copy.deepcopy(message.headers.model_json_schema(mode="serialization"))
    properties = schema["properties"]
    properties["event_type"]["const"] = message.event_type
    properties["aggregate_type"]["const"] = message.aggregate_type
    return schema


def _servers(target: KafkaTarget) -> dict[str, Any]:
    """One server per broker of the sink's URL (none for the defaults)."""
    name = target.sink or "kafka"
    several = len(target.brokers) > 1
    return {
        (f"{name}-{number}" if several else name): {
            "host": broker,
            "protocol": "kafka",
            "description": f"A broker of the Kafka sink {name!r}.",
        }
        for number, broker in enumerate(target.brokers, start=1)
    }
