"""InfluxDB: a point per order event in ``order_metrics`` (tags status and customer_segment;
fields order_value, item_count, order_id, version), as line protocol over HTTP to the v1
``/write`` or the v2 ``/api/v2/write`` endpoint.

Idempotency: a point's timestamp is derived from the event itself (its commit-time clock,
``occurred_at``, to the microsecond, plus its outbox sequence modulo 1000 as nanoseconds), so a
redelivery overwrites the same point, and two events share a timestamp only if they began in
the same microsecond and their sequences differ by a multiple of 1000.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from adapters.base import Delivery, EventEnvelope, Health, Projections
from adapters.projections import ORDER_EVENT_TYPES, ProjectionError
from adapters.readback import OrderSpan, ProjectedOrder

Api = Literal["v1", "v2"]


def point_time_ns(occurred_at: datetime, sequence: int) -> int:
    """The point's timestamp: microseconds of ``occurred_at``, then ``sequence`` mod 1000 ns."""
    delta = occurred_at - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * 1_000 + sequence % 1_000


def influxql_string(value: str) -> str:
    """``value`` as an InfluxQL string literal (quotes and backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _order_point(measurement: str) -> Any:
    def project(event: EventEnvelope) -> str:
        payload = event.payload
        try:
            line: str = (
                Point(measurement)
                .tag("status", payload["status"])
                .tag("customer_segment", payload.get("customer_segment") or "none")
                .field("order_value", float(payload["total_amount"]))
                .field("item_count", sum(int(item["quantity"]) for item in payload["items"]))
                .field("order_id", event.aggregate_id)
                .field("version", event.version)
                .field("total", str(payload["total_amount"]))
                .time(point_time_ns(event.occurred_at, event.sequence), WritePrecision.NS)
                .to_line_protocol()
            )
            return line
        except (KeyError, TypeError, ValueError) as error:
            raise ProjectionError(f"cannot make a point of the order event: {error!r}") from None

    return project


def default_projections(measurement: str = "order_metrics") -> Projections[str]:
    """Order events projected to line-protocol points."""
    projections: Projections[str] = Projections()
    for event_type in ORDER_EVENT_TYPES:
        projections.register(event_type, _order_point(measurement))
    return projections


def classify_status(status: int, body: str) -> Delivery:
    """429 and 5xx are transient; other 4xx (bad points, auth, unknown database) permanent."""
    if status == 429 or status >= 500:
        return Delivery.transient(f"HTTP {status}: {body[:500]}")
    return Delivery.permanent(f"HTTP {status}: {body[:500]}")


class InfluxSink:
    """Writes order points through the v1 or v2 write API."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        api: Api = "v1",
        measurement: str = "order_metrics",
        database: str = "orders",
        retention_policy: str | None = None,
        create_database: bool = True,
        username: str | None = None,
        password: str | None = None,
        org: str = "-",
        bucket: str | None = None,
        token: str | None = None,
        timeout_seconds: float = 10.0,
        verify_ssl: bool = True,
        projections: Projections[str] | None = None,
    ) -> None:
        self._name = name
        self.api = api
        self.measurement = measurement
        self.database = database
        self.retention_policy = retention_policy
        self.create_database = create_database
        self.org = org
        self.bucket = bucket or (f"{database}/{retention_policy}" if retention_policy else database)
        # Credentials go in the Authorization header (v1 accepts Basic; v2 a token), never in
        # the query string, where the client's log and its errors would show them.
        auth = httpx.BasicAuth(username, password or "") if username else None
        headers = {"Authorization": f"Token {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=url, auth=auth, headers=headers, timeout=timeout_seconds, verify=verify_ssl
        )
        self.projections = (
            projections if projections is not None else default_projections(measurement)
        )

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    async def start(self) -> None:
        """Create the database when configured to (v1 query API; idempotent)."""
        if self.create_database:
            response = await self._client.post(
                "/query", params={"q": f'CREATE DATABASE "{self.database}"'}
            )
            response.raise_for_status()

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def health(self) -> Health:
        """Ping the server."""
        try:
            response = await self._client.get("/ping")
        except httpx.HTTPError as error:
            return Health(False, f"{type(error).__name__}: {error}")
        return Health(response.status_code == 204, f"ping: HTTP {response.status_code}")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        """One multi-point write; on a 400, each point alone, to find the bad ones."""
        results: list[Delivery] = [Delivery.ok()] * len(batch)
        lines = self.projections.project_batch(batch, results)
        if not lines:
            return results
        outcome = await self._write([line for _, line in lines])
        if outcome.outcome.value == "permanent" and len(lines) > 1:
            # Rewriting the good points is harmless: their timestamps are fixed.
            for index, line in lines:
                results[index] = await self._write([line])
            return results
        for index, _ in lines:
            results[index] = outcome
        return results

    async def _write(self, lines: list[str]) -> Delivery:
        if self.api == "v1":
            path = "/write"
            params: dict[str, Any] = {"db": self.database, "precision": "ns"}
            if self.retention_policy:
                params["rp"] = self.retention_policy
        else:
            path = "/api/v2/write"
            params = {"org": self.org, "bucket": self.bucket, "precision": "ns"}
        try:
            response = await self._client.post(path, params=params, content="\n".join(lines))
        except httpx.TransportError as error:
            return Delivery.transient(f"{type(error).__name__}: {error}")
        if response.status_code in (200, 204):
            return Delivery.ok()
        return classify_status(response.status_code, response.text)

    async def _query(self, statement: str) -> list[dict[str, Any]]:
        response = await self._client.get(
            "/query",
            params={"db": self.database, "q": statement, "epoch": "ns"},
        )
        response.raise_for_status()
        rows: list[dict[str, Any]] = []
        for result in response.json().get("results", []):
            for series in result.get("series", []):
                columns = series["columns"]
                rows.extend(dict(zip(columns, values, strict=True)) for values in series["values"])
        return rows

    async def projected_orders(self, orders: Mapping[str, OrderSpan]) -> dict[str, ProjectedOrder]:
        """The newest point of each order.

        Points are found by time: first in the microsecond of each order's latest event (where
        an up-to-date store has it), then, for the orders not found there that have changed
        since their creation, anywhere from their creation on (a store that missed the latest
        events holds an older point).
        """
        if not orders:
            return {}
        found = await self._newest_points(
            orders,
            min(point_time_ns(span.updated_at, 0) for span in orders.values()),
            max(point_time_ns(span.updated_at, 999) for span in orders.values()),
        )
        behind = {
            order_id: span
            for order_id, span in orders.items()
            if order_id not in found and span.created_at != span.updated_at
        }
        if behind:
            found |= await self._newest_points(
                behind,
                min(point_time_ns(span.created_at, 0) for span in behind.values()),
                max(point_time_ns(span.updated_at, 999) for span in behind.values()),
            )
        return found

    async def _newest_points(
        self, orders: Mapping[str, OrderSpan], start: int, end: int
    ) -> dict[str, ProjectedOrder]:
        # Filtering by order id (a field) leaves the scan of the time range to the server and
        # returns only the orders asked for, not every order written in that range.
        wanted = " OR ".join(f'"order_id" = {influxql_string(order_id)}' for order_id in orders)
        rows = await self._query(
            f'SELECT "order_id", "version", "status", "total" FROM "{self.measurement}"'
            f" WHERE time >= {start} AND time <= {end} AND ({wanted})"
        )
        found: dict[str, ProjectedOrder] = {}
        for row in rows:
            order_id = row["order_id"]
            if row["version"] is None or row["total"] is None:
                # A point written while the query ran can show some of its fields only.
                continue
            if order_id in orders and (
                order_id not in found or found[order_id].version < row["version"]
            ):
                found[order_id] = ProjectedOrder(row["version"], row["status"], row["total"])
        return found

    async def projected_ids(self, batch_size: int) -> AsyncIterator[list[str]]:
        """Every order id with a point, in batches (a chunked query, streamed)."""
        params = {
            "db": self.database,
            "q": f'SELECT "order_id" FROM "{self.measurement}"',
            "chunked": "true",
            "chunk_size": str(batch_size),
        }
        async with self._client.stream("GET", "/query", params=params) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                batch: list[str] = []
                for result in json.loads(line).get("results", []):
                    for series in result.get("series", []):
                        position = series["columns"].index("order_id")
                        batch.extend(values[position] for values in series["values"])
                if batch:
                    yield sorted(set(batch))
