"""Traces (OpenTelemetry) against the real collector of ``scripts/services.sh``: one order
placed through ``fanout serve`` is followed in one trace from its request to every store the
relay delivers it to, and the Kafka record carries the trace on."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from gateway.telemetry.propagation import TRACEPARENT
from support.api_process import api_server, spawn, write_config
from support.spans import Collector, Span, attribute
from support.stores import STORES, drop_namespace, make_sink, store_settings
from tests.acceptance.relay_support import World
from tests.asyncapi_conformance import read_records

SINKS = (*STORES, "kafka")


def of_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [span for span in spans if span["traceId"] == trace_id]


def links_to(span: Span, trace_id: str) -> bool:
    return any(link["traceId"] == trace_id for link in span.get("links", []))


def linking_to(spans: list[Span], trace_id: str, name: str) -> list[Span]:
    return [span for span in spans if span["name"] == name and links_to(span, trace_id)]


def delivered_everywhere(trace_id: str) -> Any:
    def found(spans: list[Span]) -> bool:
        names = {span["name"] for span in of_trace(spans, trace_id)}
        return {f"deliver {sink}" for sink in SINKS} <= names

    return found


async def test_one_order_is_followed_from_its_request_to_every_store(
    world: World, tmp_path: Path
) -> None:
    collector = Collector.running()
    tag = f"traces{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path,
        {
            "postgres": {"url": world.settings.postgres.url.get_secret_value()},
            "sinks": {kind: store_settings(kind, tag) for kind in SINKS},
            "telemetry": {
                "enabled": True,
                "endpoint": collector.endpoint,
                "service_name": f"fanout-{tag}",
            },
        },
    )
    customer = await world.shop.customer()
    product = await world.shop.product()
    trace_id = uuid.uuid4().hex
    caller = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"

    try:
        async with api_server(config) as server, httpx.AsyncClient(base_url=server.url) as http:
            placed = await http.post(
                "/orders",
                json=world.shop.order(customer, (product, 2)),
                headers={TRACEPARENT: caller, "Idempotency-Key": f"trace-{trace_id}"},
                timeout=30,
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            relay = await spawn(config, "relay", "--until-idle")
            assert await asyncio.wait_for(relay.process.wait(), 120) == 0, relay.log_text
            console = await http.get(f"/console/orders/{order_id}", timeout=30)
            assert console.status_code == 200, console.text

        # The outbox row carries the request's trace.
        connection = await asyncpg.connect(world.settings.postgres.url.get_secret_value())
        try:
            headers = await connection.fetchval(
                "SELECT headers FROM outbox WHERE aggregate_id = $1", order_id
            )
        finally:
            await connection.close()
        row_context = json.loads(headers)[TRACEPARENT]
        assert row_context.split("-")[1] == trace_id

        spans = collector.wait_for(
            delivered_everywhere(trace_id), within=30, what=f"{trace_id}'s delivery spans"
        )
        trace = of_trace(spans, trace_id)
        names = [span["name"] for span in trace]
        by_id = {span["spanId"]: span for span in trace}

        # The request, the write and its transaction's statements share the caller's trace.
        [request] = [span for span in trace if span["name"] == "POST /orders"]
        assert request["parentSpanId"] == caller.split("-")[2]
        [write] = [span for span in trace if span["name"] == "place order"]
        assert by_id[write["parentSpanId"]]["name"] == "POST /orders"
        statements = [
            span["name"].rstrip(";")
            for span in sorted(trace, key=lambda span: int(span["startTimeUnixNano"]))
            if span.get("parentSpanId") == write["spanId"]
        ]
        assert statements[0] == "BEGIN" and "COMMIT" in statements, names
        assert {"INSERT", "WITH"} & set(statements), names
        # The outbox row names the write's span.
        assert row_context.split("-")[2] == write["spanId"]

        # One delivery per sink in the trace, each linked to the relay's apply of its batch,
        # the apply a child of the batch, and both linked to the trace.
        everything = {span["spanId"]: span for span in spans}
        for sink in SINKS:
            [delivery] = [span for span in trace if span["name"] == f"deliver {sink}"]
            assert attribute(delivery, "fanout.outcome") == "delivered"
            assert attribute(delivery, "fanout.aggregate_id") == order_id
            [applied] = linking_to(spans, trace_id, f"apply {sink}")
            assert [link["spanId"] for link in delivery["links"]] == [applied["spanId"]]
            batch = everything[applied["parentSpanId"]]
            assert batch["name"] == "relay batch"
            assert attribute(batch, "fanout.sink") == sink
            assert batch in linking_to(spans, trace_id, "relay batch")
            assert attribute(applied["resource"], "fanout.role") == "relay"

        # A Kafka consumer can continue the trace: the record carries it.
        records = await read_records(store_settings("kafka", tag)["url"], [f"{tag}.order"])
        [record] = [r for r in records if r.key is not None and r.key.decode() == order_id]
        carried = dict((name, value.decode()) for name, value in record.headers)
        assert carried[TRACEPARENT] == row_context

        # The console's order page names the trace and where Kafka holds the record.
        page = console.text
        assert f'<code class="trace-id">{trace_id}</code>' in page
        kafka_row = page[page.index('data-store="kafka"') :].split("</tr>")[0]
        assert 'data-standing="in step"' in kafka_row
        assert (
            f"{record.topic} · partition {record.partition} · offset {record.offset}" in kafka_row
        )
    finally:
        for kind in STORES:
            store = make_sink(kind, tag)
            try:
                await drop_namespace(store)
            finally:
                await store.close()


def named(spans: list[Span], service: str, name: str) -> list[Span]:
    return [
        span
        for span in spans
        if span["name"] == name and attribute(span["resource"], "service.name") == service
    ]


async def test_a_backfill_and_a_rewind_are_traces_of_their_own(
    world: World, tmp_path: Path
) -> None:
    collector = Collector.running()
    tag = f"traces{uuid.uuid4().hex[:8]}"
    service = f"fanout-{tag}"
    config = write_config(
        tmp_path,
        {
            "postgres": {"url": world.settings.postgres.url.get_secret_value()},
            "sinks": {"redis": store_settings("redis", tag)},
            "telemetry": {"enabled": True, "endpoint": collector.endpoint, "service_name": service},
        },
    )
    await world.place_orders(3)
    relay = await spawn(config, "relay", "--until-idle")
    assert await asyncio.wait_for(relay.process.wait(), 120) == 0, relay.log_text

    for command in (
        ["backfill", "--sink", "redis"],
        ["rewind", "--sink", "redis", "--to", "2000-01-01T00:00:00+00:00", "--yes"],
    ):
        done = await spawn(config, *command)
        assert await asyncio.wait_for(done.process.wait(), 120) == 0, done.log_text

    spans = collector.wait_for(
        lambda spans: (
            bool(named(spans, service, "backfill redis"))
            and bool(named(spans, service, "rewind redis"))
        ),
        within=30,
        what=f"{service}'s backfill and rewind spans",
    )
    [backfill] = named(spans, service, "backfill redis")
    [rewind] = named(spans, service, "rewind redis")
    for span in (backfill, rewind):
        assert "parentSpanId" not in span or not span["parentSpanId"]
        assert attribute(span["resource"], "fanout.role") == "command"
    # Their statements are theirs: children in their own traces.
    assert any(
        s["traceId"] == backfill["traceId"] and s.get("parentSpanId") == backfill["spanId"]
        for s in spans
    )
    assert backfill["traceId"] != rewind["traceId"]
    store = make_sink("redis", tag)
    try:
        await drop_namespace(store)
    finally:
        await store.close()
