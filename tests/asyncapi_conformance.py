"""Whether a Kafka record is what an AsyncAPI document says: its topic is a channel's address,
its ``event_type`` header names one of that channel's messages, and its value, headers and
key match that message's schemas (JSON Schema, formats checked)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from adapters.kafka_url import bootstrap_servers


@dataclass(frozen=True)
class PublishedRecord:
    """A record as a consumer reads it."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]
    partition: int = -1
    offset: int = -1


@dataclass(frozen=True)
class _MessageCheck:
    payload: jsonschema_rs.Validator
    headers: jsonschema_rs.Validator
    key: jsonschema_rs.Validator


def _validator(schema: Mapping[str, Any], components: Mapping[str, Any]) -> jsonschema_rs.Validator:
    # The document's components ride along so that "#/components/schemas/..." resolves.
    return jsonschema_rs.validator_for({**schema, "components": components}, validate_formats=True)


def _errors(validator: jsonschema_rs.Validator, instance: Any, what: str) -> list[str]:
    return [
        f"{what} at /{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


class Conformance:
    """The messages of an AsyncAPI 3 document, by topic and event type."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        components = document["components"]
        self._checks: dict[tuple[str, str], _MessageCheck] = {}
        for channel in document["channels"].values():
            for reference in channel["messages"].values():
                message = components["messages"][reference["$ref"].rsplit("/", 1)[1]]
                check = _MessageCheck(
                    _validator(message["payload"], components),
                    _validator(message["headers"], components),
                    _validator(message["bindings"]["kafka"]["key"], components),
                )
                self._checks[(channel["address"], message["name"])] = check

    @property
    def messages(self) -> set[tuple[str, str]]:
        """Every (topic, event type) the document describes."""
        return set(self._checks)

    def problems(self, record: PublishedRecord) -> list[str]:
        """What in ``record`` the document does not allow (empty: it conforms)."""
        names = [name for name, _ in record.headers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            return [f"headers repeated: {', '.join(repeated)}"]
        try:
            headers = {name: value.decode() for name, value in record.headers}
            payload = json.loads(record.value)
            key = record.key.decode() if record.key is not None else None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return [f"not UTF-8 text or JSON: {error}"]
        event_type = headers.get("event_type")
        check = self._checks.get((record.topic, event_type or ""))
        if check is None:
            return [f"no message {event_type!r} on a channel at {record.topic!r}"]
        return [
            *_errors(check.payload, payload, "payload"),
            *_errors(check.headers, headers, "headers"),
            *_errors(check.key, key, "key"),
        ]


async def read_records(url: str, topics: Iterable[str]) -> list[PublishedRecord]:
    """Every record of ``topics``, from the beginning to their current end, read with another
    client than the sink's."""
    servers = bootstrap_servers(url)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic["error_code"] == 0
        for partition in topic["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[tuple[str, int, int], PublishedRecord] = {}
        async with asyncio.timeout(60):
            while any([await consumer.position(p) < end for p, end in ends.items()]):
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in batch:
                        records[(r.topic, r.partition, r.offset)] = PublishedRecord(
                            r.topic, r.key, r.value, list(r.headers), r.partition, r.offset
                        )
        return list(records.values())
    finally:
        await consumer.stop()
