"""InfluxDB 1.x with authentication on: the sink's credentials travel in the Authorization
header, never in a URL, so neither the server's nor the client's logs and errors hold them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from adapters.base import Outcome
from adapters.influx import InfluxSink
from adapters.readback import OrderSpan
from support.servers import server_url
from support.stores import order_event


def auth_server() -> tuple[str, str, str]:
    """The URL of the InfluxDB that has authentication on, without its credentials, and
    its admin's user name and password."""
    parts = urlsplit(server_url("influxdb-auth"))
    assert parts.username and parts.password and parts.hostname
    address = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", "", "", ""))
    return address, parts.username, parts.password


@asynccontextmanager
async def influx_sink(password: str | None = None) -> AsyncIterator[tuple[InfluxSink, str]]:
    url, user, real_password = auth_server()
    sink = InfluxSink(
        "metrics",
        url,
        database=f"orders_{uuid.uuid4().hex[:10]}",
        username=user,
        password=password or real_password,
    )
    try:
        yield sink, password or real_password
    finally:
        async with httpx.AsyncClient(base_url=url, auth=(user, real_password)) as admin:
            await admin.post("/query", params={"q": f'DROP DATABASE "{sink.database}"'})
        await sink.close()


async def test_the_server_refuses_a_request_without_credentials() -> None:
    url, _, _ = auth_server()
    async with httpx.AsyncClient(base_url=url) as client:
        answer = await client.get("/query", params={"q": "SHOW DATABASES"})
    assert answer.status_code == 401


async def test_credentials_in_the_header_create_write_and_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with influx_sink() as (sink, password):
        await sink.start()
        event = order_event(str(uuid.uuid4()), 1)
        [delivery] = await sink.apply([event])
        assert delivery.outcome is Outcome.DELIVERED, delivery.error
        found = await sink.projected_orders(
            {event.aggregate_id: OrderSpan(event.occurred_at, event.occurred_at)}
        )
    assert found[event.aggregate_id].version == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/write" in logged  # the client logs each request's URL...
    assert password not in logged  # ...which holds no password


async def test_a_wrong_password_fails_without_showing_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-Influx-Password-42"
    async with influx_sink(password=wrong) as (sink, _):
        with pytest.raises(httpx.HTTPStatusError) as failure:
            await sink.start()
        [delivery] = await sink.apply([order_event(str(uuid.uuid4()), 1)])
    assert failure.value.response.status_code == 401
    assert delivery.outcome is Outcome.PERMANENT and "401" in (delivery.error or "")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert wrong not in f"{failure.value} {delivery.error} {logged}"
