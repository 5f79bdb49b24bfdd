"""The headers of a Kafka record (every value UTF-8 text): the five the sink adds to every
record, and the event's own headers that some of the gateway's events carry."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.config import JsonDict

VERSION_PATTERN = r"^[1-9][0-9]*$"


OptionalHeader = Annotated[str | None, WithJsonSchema({"type": "string"})]
"""A header some records carry: text when present (never null)."""


def _absent_by_default(schema: JsonDict) -> None:
    # A header left out is absent from the record, not null: no default to state.
    schema.pop("default", None)


class RecordHeaders(BaseModel):
    """The headers of every record: the five the Kafka sink adds, and the trace context of
    an event written while the gateway traces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(
        json_schema_extra={"format": "uuid"},
        description="The event's id (a UUID): a record seen twice (delivery is at least once) "
        "has the same one.",
    )
    event_type: str = Field(description="The event's type, such as 'order.placed'.")
    aggregate_type: str = Field(
        description="The type of the aggregate the event belongs to (the topic is chosen by it)."
    )
    version: Annotated[str, StringConstraints(pattern=VERSION_PATTERN)] = Field(
        description="The aggregate's version after the event, in decimal: each aggregate's "
        "records come in version order within its partition."
    )
    occurred_at: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the event was appended to the outbox (ISO 8601 with its offset); "
        "the record's timestamp is the same time.",
    )
    traceparent: OptionalHeader = Field(
        default=None,
        json_schema_extra=_absent_by_default,
        description="The W3C trace context of the request (or command) that wrote the event, "
        "when the gateway traces (telemetry.enabled): a consumer continues that trace from it.",
    )


class OrderPlacedHeaders(RecordHeaders):
    """An ``order.placed`` record's headers."""

    idempotency_key: OptionalHeader = Field(
        default=None,
        json_schema_extra=_absent_by_default,
        description="The Idempotency-Key of the request that placed the order, when it "
        "carried one.",
    )


class SnapshotHeaders(RecordHeaders):
    """An ``order.snapshot`` record's headers."""

    backfill: Literal["true"] = Field(description="Always 'true': sent by a backfill.")
