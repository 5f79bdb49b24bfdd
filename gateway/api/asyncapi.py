"""``GET /asyncapi.json``: the AsyncAPI document of the events on Kafka."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.configuration.settings import Settings
from gateway.contract.asyncapi import asyncapi_document, kafka_targets
from gateway.version import version

asyncapi = APIRouter(tags=["operations"])


@asyncapi.get(
    "/asyncapi.json",
    responses={200: {"description": "The AsyncAPI 3.0 document"}},
)
async def asyncapi_json(request: Request) -> dict[str, Any]:
    """The contract of the events the Kafka sinks publish, as an AsyncAPI 3.0 document: a
    channel per topic, a message per event type with the JSON Schema of its payload and
    headers, and the record's key; the servers are the sinks' brokers. It describes every
    enabled Kafka sink (with none configured, the sink's default topics and no servers)."""
    settings: Settings = request.app.state.settings
    return asyncapi_document(kafka_targets(settings), version())
