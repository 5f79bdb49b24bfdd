"""The HTTP API: ``fanout serve`` on a real port over a real database, through httpx."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from gateway import Customer, Gateway, Product
from gateway.version import version
from support.api_process import ApiServer, api_server, write_config
from support.shop import Shop
from tests.acceptance.conftest import DatabaseFactory, create_migrated_database

API_KEY = "test-api-key-0123456789"
MAX_BODY = 65_536
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def server(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """One API server for the module, with an API key and a small body limit."""
    config = write_config(
        tmp_path_factory.mktemp("api"),
        {
            "postgres": {"url": migrated_url},
            "api": {"key": API_KEY, "max_body_bytes": MAX_BODY},
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    async with api_server(config) as running:
        yield running


@pytest.fixture
async def client(server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the module's server."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
async def customer(shop: Shop) -> Customer:
    return await shop.customer()


@pytest.fixture
async def product(shop: Shop) -> Product:
    return await shop.product(price="12.50", stock=50)


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """Check that ``response`` is an RFC 9457 problem of ``kind``, and return it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:fanout:problem:{kind}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    return body


def fields_of(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"test-{uuid.uuid4()}"}


async def order_count(gateway: Gateway) -> int:
    """Orders in the gateway's database (every shard's, in sharded mode)."""
    return (await Shop(gateway).counts()).orders


async def test_probes_and_the_openapi_document_need_no_key(server: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        health = await anonymous.get("/healthz")
        ready = await anonymous.get("/readyz")
        document = await anonymous.get("/openapi.json")

    assert (health.status_code, health.json()) == (200, {"status": "ok", "version": version()})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert {"/orders", "/orders/{order_id}", "/orders/{order_id}/transitions", "/customers"} <= set(
        paths
    )
    assert "422" in paths["/orders"]["post"]["responses"]
    assert "HTTPBearer" in document.json()["components"]["securitySchemes"]


async def test_readyz_gives_its_details_only_with_the_key(
    server: ApiServer, client: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        bare = await anonymous.get("/readyz")
        wrong = await anonymous.get("/readyz", headers={"Authorization": "Bearer not-the-key"})
    detailed = await client.get("/readyz")

    assert bare.json() == wrong.json() == {"status": "ready"}
    readiness = detailed.json()
    assert readiness["status"] == "ready" and readiness["postgres"]["ok"] is True
    assert [(s["name"], s["ok"]) for s in readiness["sinks"]] == [("memory", True)]
    assert readiness["replicas"] == [] and "standbys" in readiness


async def healthz_over(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
) -> bytes:
    """The status line of ``GET /healthz`` sent on an open connection, or b"" if it closed."""
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0]


async def test_a_connection_idle_past_a_client_pools_expiry_is_still_open(
    server: ApiServer,
) -> None:
    """A pooled client never sends a request on a connection the server is closing.

    The idle time is what is tested: past httpx's pool expiry, where uvicorn's own default
    (5 s, the same as httpx's) would already have closed the connection.
    """
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    idle = httpx.Limits().keepalive_expiry or 0.0
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        first = await healthz_over(reader, writer, url.hostname)
        await asyncio.sleep(idle + 1)
        second = await healthz_over(reader, writer, url.hostname)
    finally:
        writer.close()

    assert (first, second) == (b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-0123456789", f"Basic {API_KEY}"])
async def test_without_the_api_key_requests_are_refused(
    server: ApiServer, gateway: Gateway, customer: Customer, product: Product, authorization: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    before = await order_count(gateway)
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        placed = await http.post("/orders", json=Shop.order(customer, (product, 1)), headers=key())
        metrics = await http.get("/metrics")

    for response in (placed, metrics):
        problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    assert await order_count(gateway) == before


async def test_place_order_creates_then_replays_then_conflicts(
    client: httpx.AsyncClient, gateway: Gateway, customer: Customer, product: Product
) -> None:
    request = Shop.order(customer, (product, 2), metadata={"channel": "web"})
    headers = key()

    created = await client.post("/orders", json=request, headers=headers)
    replayed = await client.post("/orders", json=request, headers=headers)
    before = await order_count(gateway)
    conflict = await client.post(
        "/orders", json=Shop.order(customer, (product, 3)), headers=headers
    )

    assert created.status_code == 201, created.text
    order = created.json()
    assert created.headers["location"] == f"/orders/{order['id']}"
    assert (order["status"], order["version"], order["subtotal"]) == ("pending", 1, "25.00")
    assert order["items"][0]["quantity"] == 2 and order["metadata"] == {"channel": "web"}
    assert replayed.status_code == 200
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == order
    body = problem(conflict, 409, "idempotency-key-reused")
    assert body["field"] == "Idempotency-Key"
    assert await order_count(gateway) == before
    fetched = await client.get(f"/orders/{order['id']}")
    assert (fetched.status_code, fetched.json()) == (200, order)


async def test_the_idempotency_key_is_required_and_checked(
    client: httpx.AsyncClient, gateway: Gateway, customer: Customer, product: Product
) -> None:
    request = Shop.order(customer, (product, 1))
    before = await order_count(gateway)

    missing = await client.post("/orders", json=request)
    too_long = await client.post("/orders", json=request, headers={"Idempotency-Key": "k" * 300})

    assert problem(missing, 400, "idempotency-key-missing")["field"] == "Idempotency-Key"
    assert fields_of(problem(too_long, 422, "validation-error")) == ["Idempotency-Key"]
    assert await order_count(gateway) == before


async def test_transitions_check_the_version_and_the_state_machine(
    client: httpx.AsyncClient, customer: Customer, product: Product
) -> None:
    order = (
        await client.post("/orders", json=Shop.order(customer, (product, 1)), headers=key())
    ).json()
    path = f"/orders/{order['id']}/transitions"

    confirmed = await client.post(path, json={"status": "confirmed", "expected_version": 1})
    stale = await client.post(path, json={"status": "processing", "expected_version": 1})
    illegal = await client.post(path, json={"status": "delivered"})
    unknown_status = await client.post(path, json={"status": "teleported"})
    missing_order = await client.post(
        f"/orders/{uuid.uuid4()}/transitions", json={"status": "confirmed"}
    )

    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["status"], confirmed.json()["version"]) == ("confirmed", 2)
    conflict = problem(stale, 409, "version-conflict")
    assert (conflict["expected_version"], conflict["current_version"]) == (1, 2)
    rule = problem(illegal, 409, "illegal-transition")
    assert (rule["from_status"], rule["to_status"]) == ("confirmed", "delivered")
    assert rule["allowed"] == ["cancelled", "processing"]
    assert fields_of(problem(unknown_status, 422, "validation-error")) == ["status"]
    problem(missing_order, 404, "not-found")
    after = (await client.get(f"/orders/{order['id']}")).json()
    assert (after["status"], after["version"]) == ("confirmed", 2)


async def test_get_order_answers_404_and_422(client: httpx.AsyncClient) -> None:
    problem(await client.get(f"/orders/{uuid.uuid4()}"), 404, "not-found")
    invalid = problem(await client.get("/orders/not-a-uuid"), 422, "validation-error")
    assert fields_of(invalid) == ["order_id"]
    problem(await client.get("/nowhere"), 404, "not-found")
    problem(await client.delete(f"/orders/{uuid.uuid4()}"), 405, "method-not-allowed")


async def test_customers_are_created_and_duplicates_conflict(client: httpx.AsyncClient) -> None:
    email = f"api-{uuid.uuid4().hex[:8]}@example.com"
    request = {
        "email": email,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "addresses": [
            {
                "address_type": "billing",
                "street_address": "1 Analytical Row",
                "city": "London",
                "postal_code": "N1",
                "country": "GB",
            }
        ],
    }

    created = await client.post("/customers", json=request)
    duplicate = await client.post("/customers", json=request)
    invalid = await client.post("/customers", json={**request, "email": "nobody"})

    assert created.status_code == 201, created.text
    assert created.json()["email"] == email
    assert created.json()["addresses"][0]["city"] == "London"
    assert problem(duplicate, 409, "already-exists")["field"] == "email"
    assert fields_of(problem(invalid, 422, "validation-error")) == ["email"]


async def test_bad_bodies_get_a_problem_and_write_nothing(
    client: httpx.AsyncClient, gateway: Gateway, customer: Customer, product: Product
) -> None:
    valid = Shop.order(customer, (product, 1))
    before = await order_count(gateway)

    malformed = await client.post(
        "/orders",
        content=b'{"customer_id": ',
        headers={**key(), "Content-Type": "application/json"},
    )
    wrong_types = await client.post(
        "/orders",
        json={
            **valid,
            "customer_id": 5,
            "items": [{"product_id": str(product.id), "quantity": "x"}],
        },
        headers=key(),
    )
    unknown_field = await client.post("/orders", json={**valid, "coupon": "FREE"}, headers=key())
    not_json = await client.post(
        "/orders", content=b"customer_id=1", headers={**key(), "Content-Type": "text/plain"}
    )
    unknown_product = await client.post(
        "/orders",
        json=Shop.order(customer, (product, 1))
        | {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}]},
        headers=key(),
    )
    too_many = await client.post("/orders", json=Shop.order(customer, (product, 51)), headers=key())
    huge = await client.post(
        "/orders",
        json={**valid, "metadata": {"padding": "x" * (MAX_BODY + 1)}},
        headers=key(),
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    huge_chunked = await client.post(
        "/orders", content=chunks(), headers={**key(), "Content-Type": "application/json"}
    )

    problem(malformed, 400, "malformed-json")
    assert fields_of(problem(wrong_types, 422, "validation-error")) == [
        "customer_id",
        "items[0].quantity",
    ]
    assert fields_of(problem(unknown_field, 422, "validation-error")) == ["coupon"]
    assert problem(not_json, 415, "unsupported-media-type")["field"] == "Content-Type"
    assert fields_of(problem(unknown_product, 422, "validation-error")) == ["items[0].product_id"]
    shortage = problem(too_many, 409, "insufficient-inventory")
    assert (shortage["requested"], shortage["available"]) == (51, 50)
    problem(huge, 413, "request-body-too-large")
    problem(huge_chunked, 413, "request-body-too-large")
    assert await order_count(gateway) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["declared length", "chunked"])
def test_a_plain_client_sending_a_body_far_over_the_limit_reads_the_413(
    server: ApiServer, chunked: bool
) -> None:
    """The server answers before the body has arrived; it must read and drop the rest (for a
    bounded time) so that the client, still sending, can read the answer: closing with unread
    data in the socket resets the connection instead."""
    body = json.dumps({"metadata": {"padding": "x" * 5_000_000}}).encode()
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json",
        **key(),
    }
    request = urllib.request.Request(
        f"{server.url}/orders",
        data=iter([body[i : i + 65_536] for i in range(0, len(body), 65_536)]) if chunked else body,
        headers=headers if chunked else {**headers, "Content-Length": str(len(body))},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    answer = json.loads(refused.value.read())
    assert answer["type"] == "urn:fanout:problem:request-body-too-large"


async def test_sql_looking_strings_are_stored_verbatim(
    client: httpx.AsyncClient, gateway: Gateway, product: Product
) -> None:
    hostile = "Robert'); DROP TABLE customers;--"
    customer = await client.post(
        "/customers",
        json={
            "email": f"bobby-{uuid.uuid4().hex[:8]}@example.com",
            "first_name": hostile,
            "last_name": "' OR '1'='1",
            "addresses": [
                {
                    "address_type": kind,
                    "street_address": "1; DELETE FROM orders; --",
                    "city": "$1::text",
                    "postal_code": "0",
                }
                for kind in ("billing", "shipping")
            ],
        },
    )
    assert customer.status_code == 201, customer.text
    stored = Customer.model_validate(customer.json())
    order = await client.post(
        "/orders",
        json=Shop.order(
            stored, (product, 1), notes=hostile, metadata={"q": "'; SELECT pg_sleep(9)"}
        ),
        headers=key(),
    )

    assert order.status_code == 201, order.text
    fetched = (await client.get(f"/orders/{order.json()['id']}")).json()
    assert (fetched["notes"], fetched["metadata"]) == (hostile, {"q": "'; SELECT pg_sleep(9)"})
    row = await gateway.pool.fetchrow(
        "SELECT first_name, last_name FROM customers WHERE id = $1", stored.id
    )
    assert row is not None and (row["first_name"], row["last_name"]) == (hostile, "' OR '1'='1")
    assert stored.addresses[0].street_address == "1; DELETE FROM orders; --"
    assert await gateway.pool.fetchval("SELECT count(*) FROM customers") > 0


async def test_metrics_count_requests_by_route(
    client: httpx.AsyncClient, customer: Customer, product: Product
) -> None:
    await client.post("/orders", json=Shop.order(customer, (product, 1)), headers=key())
    await client.get(f"/orders/{uuid.uuid4()}")

    metrics = await client.get("/metrics")

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'fanout_http_requests_total{method="POST",route="/orders",status="201"}' in text
    assert (
        'fanout_http_requests_total{method="GET",route="/orders/{order_id}",status="404"}' in text
    )
    assert "fanout_orders_placed_total" in text


@pytest.fixture
async def own_database(
    create_database: DatabaseFactory, tmp_path: Path
) -> AsyncIterator[tuple[str, ApiServer]]:
    """An API server over a migrated database of its own, which the test may break."""
    url = await create_migrated_database(create_database)
    config = write_config(tmp_path, {"postgres": {"url": url}})
    async with api_server(config) as running:
        yield url, running


async def test_a_server_error_leaks_no_sql_and_is_logged_with_an_id(
    own_database: tuple[str, ApiServer],
) -> None:
    url, server = own_database
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("ALTER TABLE orders RENAME TO orders_renamed")
    finally:
        await connection.close()

    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(f"/orders/{uuid.uuid4()}")

    body = problem(response, 500, "internal-error")
    assert set(body) == {"type", "title", "status", "detail", "instance", "error_id"}
    for leak in ("SELECT", "relation", "orders_renamed", "asyncpg", "Traceback", "@127.0.0.1"):
        assert leak not in response.text
    assert body["error_id"] in server.server.log_text


async def test_readyz_is_503_when_postgres_cannot_be_reached(
    own_database: tuple[str, ApiServer], postgres_server: str
) -> None:
    url, server = own_database
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()

    async with httpx.AsyncClient(base_url=server.url) as http:
        ready = await http.get("/readyz")
        alive = await http.get("/healthz")

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["postgres"]["ok"] is False
    assert alive.status_code == 200


async def test_without_a_webhook_secret_the_payment_webhook_is_off(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/webhooks/payments", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 404
    assert "payments.webhook_secret" in response.json()["detail"]
