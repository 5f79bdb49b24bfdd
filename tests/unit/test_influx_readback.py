"""InfluxDB read-back of points that a concurrent write has made only partly visible: no I/O.

InfluxDB 1.x stores each field of a point separately, so a query that runs while the point is
being written can return the point with some fields null. Seen against the real server during
load tests; reproduced here with its exact response shape.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from adapters.influx import InfluxSink, influxql_string
from adapters.readback import OrderSpan

WHEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
COLUMNS = ["time", "order_id", "version", "status", "total"]


def sink_answering(values: list[list[object]]) -> InfluxSink:
    def answer(request: httpx.Request) -> httpx.Response:
        series = {"name": "order_metrics", "columns": COLUMNS, "values": values}
        return httpx.Response(200, json={"results": [{"statement_id": 0, "series": [series]}]})

    sink = InfluxSink("influxdb", "http://influx.invalid")
    sink._client = httpx.AsyncClient(
        base_url="http://influx.invalid", transport=httpx.MockTransport(answer)
    )
    return sink


async def test_a_point_with_null_fields_is_not_yet_visible() -> None:
    sink = sink_answering(
        [
            [1, "a", None, "pending", "10.00"],
            [2, None, 1, "pending", None],
            [3, "b", 2, "confirmed", None],
            [4, "c", 1, "pending", "30.00"],
        ]
    )
    spans = {order_id: OrderSpan(WHEN, WHEN) for order_id in ("a", "b", "c")}
    found = await sink.projected_orders(spans)
    assert set(found) == {"c"}
    assert (found["c"].version, found["c"].total) == (1, "30.00")


def test_order_ids_are_quoted_as_influxql_strings() -> None:
    assert influxql_string("7f1c") == "'7f1c'"
    assert influxql_string("it's") == "'it\\'s'"
    assert influxql_string("a\\'b") == "'a\\\\\\'b'"


async def test_the_read_back_asks_only_for_the_orders_it_looks_for() -> None:
    statements: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        statements.append(request.url.params["q"])
        return httpx.Response(200, json={"results": [{"statement_id": 0}]})

    sink = InfluxSink("influxdb", "http://influx.invalid")
    sink._client = httpx.AsyncClient(
        base_url="http://influx.invalid", transport=httpx.MockTransport(answer)
    )
    await sink.projected_orders({"a": OrderSpan(WHEN, WHEN), "b": OrderSpan(WHEN, WHEN)})
    assert statements and all(
        statement.endswith(""" AND ("order_id" = 'a' OR "order_id" = 'b')""")
        for statement in statements
    )
