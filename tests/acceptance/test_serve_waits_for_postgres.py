"""``fanout serve`` as a real process, started while PostgreSQL resets every connection (as one
restarting does): it stays up, answers its liveness probe, answers readiness and every
database route with 503 and ``Retry-After``, and serves orders once PostgreSQL answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from gateway.configuration.secrets import redact_url
from support.api_process import ApiServer, api_server, spawn, write_config
from support.eventually import eventually
from support.sharding import connect_sharded, sharded_databases
from support.shop import Shop
from tests.acceptance.postgres_proxy import ResettingProxy
from tests.acceptance.relay_support import World


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[ResettingProxy]:
    """A proxy to the test's database that resets every connection until told to forward."""
    resetting = ResettingProxy(world.settings.postgres.url.get_secret_value())
    await resetting.start()
    try:
        yield resetting
    finally:
        await resetting.close()


def serve_config(url: str, directory: Path) -> Path:
    """A config file serving the API over ``url``, retrying quickly."""
    return write_config(
        directory,
        {
            "postgres": {"url": url},
            "relay": {"backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.5},
            "sinks": {"memory": {"type": "memory"}},
        },
    )


def alive(server: ApiServer) -> bool:
    """True while the server runs; fails the test, with its log, once it exited."""
    code = server.server.process.returncode
    assert code is None, f"fanout serve exited with {code}:\n{server.server.log_text[-3000:]}"
    return True


async def test_serve_started_while_postgres_resets_connections_waits_then_serves(
    world: World, proxy: ResettingProxy, tmp_path: Path
) -> None:
    customer = await world.shop.customer()
    product = await world.shop.product(stock=10)
    order = Shop.order(customer, (product, 1))
    key = {"Idempotency-Key": str(uuid.uuid4())}

    async with (
        api_server(serve_config(proxy.url, tmp_path)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        await eventually(lambda: alive(server) and proxy.resets >= 3, within=120)
        assert "waiting for PostgreSQL" in server.server.log_text
        assert f"at {redact_url(proxy.url)}" in server.server.log_text

        live = await http.get("/healthz")
        assert live.status_code == 200, live.text
        ready = await http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.headers["retry-after"] == "1"
        refused = await http.post("/orders", json=order, headers=key)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["type"] == "urn:fanout:problem:database-unavailable"
        missing = await http.get(f"/orders/{customer.id}")
        assert missing.status_code == 503, missing.text

        proxy.forwarding = True

        async def ready_now() -> bool:
            return alive(server) and (await http.get("/readyz")).status_code == 200

        await eventually(ready_now, within=120)
        placed = await http.post("/orders", json=order, headers=key)
        assert placed.status_code == 201, placed.text
        assert placed.json()["customer_id"] == str(customer.id)

        code = await server.server.terminate(within=60)

    assert code == 0, server.server.log_text[-3000:]
    password = urlsplit(world.settings.postgres.url.get_secret_value()).password
    assert password and f":{password}@" not in server.server.log_text


async def test_serve_waiting_for_postgres_stops_promptly_on_sigterm(
    world: World, proxy: ResettingProxy, tmp_path: Path
) -> None:
    async with api_server(serve_config(proxy.url, tmp_path)) as server:
        await eventually(lambda: alive(server) and proxy.resets >= 2, within=120)

        started = asyncio.get_running_loop().time()
        code = await server.server.terminate(within=30)
        stopped_in = asyncio.get_running_loop().time() - started

    assert code == 0, server.server.log_text[-3000:]
    assert stopped_in < 10, f"took {stopped_in:.1f} s to stop"


async def test_serve_refused_by_postgres_at_start_exits_with_the_error_not_waiting(
    world: World, tmp_path: Path
) -> None:
    """A wrong password is not mended by waiting: the API does not start, password hidden."""
    parts = urlsplit(world.settings.postgres.url.get_secret_value())
    wrong = f"{parts.username}:Wr0ngSecret@{parts.hostname}:{parts.port}"
    config = serve_config(urlunsplit(parts._replace(netloc=wrong)), tmp_path)

    server = await spawn(config, "serve", "--port", "0")
    try:
        code = await asyncio.wait_for(server.process.wait(), 60)
        assert server.reader is not None
        await server.reader
    finally:
        await server.kill()

    assert code == 3, server.log_text
    assert "password authentication failed" in server.log_text
    assert "waiting for PostgreSQL" not in server.log_text
    assert "Wr0ngSecret" not in server.log_text


async def test_sharded_serve_started_while_the_catalog_resets_connections_waits_then_serves(
    tmp_path: Path,
) -> None:
    async with sharded_databases() as found:
        gateway = await connect_sharded(found)
        try:
            shop = Shop(gateway)
            customer = await shop.customer()
            product = await shop.product(stock=10)
        finally:
            await gateway.close()
        catalog = ResettingProxy(found.catalog)
        await catalog.start()
        config = write_config(
            tmp_path,
            {
                "postgres": {
                    "url": catalog.url,
                    "shards": {name: {"url": url} for name, url in found.shards.items()},
                },
                "relay": {"backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.5},
                "sinks": {"memory": {"type": "memory"}},
            },
        )
        try:
            async with (
                api_server(config) as server,
                httpx.AsyncClient(base_url=server.url, timeout=30) as http,
            ):
                await eventually(lambda: alive(server) and catalog.resets >= 3, within=120)
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/readyz")).status_code == 503

                catalog.forwarding = True

                async def ready_now() -> bool:
                    return alive(server) and (await http.get("/readyz")).status_code == 200

                await eventually(ready_now, within=120)
                placed = await http.post(
                    "/orders",
                    json=Shop.order(customer, (product, 2)),
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                assert placed.status_code == 201, placed.text
        finally:
            await catalog.close()


async def exchange(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, path: str) -> str:
    """Send ``GET path`` on a kept-alive connection; the response's status line and headers
    (its body read and dropped), or ``""`` if the server closed the connection instead."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode() if not reader.at_eof() else ""
    length = next(
        (
            int(line.split(":", 1)[1])
            for line in head.lower().splitlines()
            if line.startswith("content-length:")
        ),
        0,
    )
    await reader.readexactly(length)
    return head


async def test_a_503_for_postgres_gone_mid_run_is_an_answer_not_a_server_error(
    world: World, proxy: ResettingProxy, tmp_path: Path
) -> None:
    """PostgreSQL going away under a connected API: each request gets its 503, the client's
    connection stays open for the next one, and the log holds no unhandled error."""
    proxy.forwarding = True
    async with api_server(serve_config(proxy.url, tmp_path)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

            async def ready_now() -> bool:
                return alive(server) and (await http.get("/readyz")).status_code == 200

            await eventually(ready_now, within=120)
        proxy.forwarding = False
        proxy.reset_open_connections()

        host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
        reader, writer = await asyncio.open_connection(host, port)
        try:
            first = await exchange(writer, reader, f"/orders/{uuid.uuid4()}")
            second = await exchange(writer, reader, f"/orders/{uuid.uuid4()}")
            third = await exchange(writer, reader, "/healthz")
        finally:
            writer.close()

    for answer in (first, second):
        assert answer.startswith("HTTP/1.1 503"), answer
        assert "retry-after: 1" in answer.lower()
    assert third.startswith("HTTP/1.1 200"), third
    assert "Exception in ASGI application" not in server.server.log_text
