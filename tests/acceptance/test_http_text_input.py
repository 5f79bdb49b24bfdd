"""Text that is not Unicode (a lone surrogate, which JSON's ``\\ud800`` escape can carry) sent
to ``fanout serve`` on a real port over a real database: a 422 naming where it is, and nothing
written."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway import Gateway
from support.api_process import ApiServer, api_server, write_config
from support.shop import Shop


@pytest.fixture(scope="module")
async def server(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """One API server for the module."""
    config = write_config(
        tmp_path_factory.mktemp("api"),
        {"postgres": {"url": migrated_url}, "sinks": {"memory": {"type": "memory"}}},
    )
    async with api_server(config) as running:
        yield running


@pytest.fixture
async def client(server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


async def post_json(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST ``body`` as JSON text, lone surrogates escaped as ``\\uXXXX`` (as any JSON encoder
    writes them)."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"k-{uuid.uuid4()}"}
    return await client.post(path, content=json.dumps(body).encode("ascii"), headers=headers)


def refused_fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:fanout:problem:validation-error"
    return [error["field"] for error in problem["errors"]]


def product(**fields: Any) -> dict[str, Any]:
    return {"sku": f"SG-{uuid.uuid4().hex[:10]}", "name": "Pen", "base_price": "1.00"} | fields


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (product(description="d\ud800"), "description"),
        (product(attributes={"colour": "\udfff"}), "attributes.colour"),
        (product(attributes={"\ud800": 1}), "attributes"),
        (product(attributes={"sizes": ["s", ["m\udc00"]]}), "attributes.sizes[1][0]"),
        (product(attributes={"box": {"label": "x\ud800y"}}), "attributes.box.label"),
    ],
    ids=["description", "attribute value", "attribute key", "nested list", "nested object"],
)
async def test_a_product_with_a_lone_surrogate_is_refused_naming_where(
    client: httpx.AsyncClient, gateway: Gateway, body: dict[str, Any], field: str
) -> None:
    response = await post_json(client, "/products", body)

    assert refused_fields(response) == [field]
    async with gateway.pool.acquire() as connection:
        stored = await connection.fetchval(
            "SELECT count(*) FROM products WHERE sku = $1", body["sku"]
        )
    assert stored == 0


async def test_an_order_with_a_lone_surrogate_is_refused_naming_where(
    client: httpx.AsyncClient, gateway: Gateway, shop: Shop
) -> None:
    customer = await shop.customer()
    item = await shop.product(stock=5)
    order = Shop.order(customer, (item, 1))
    before = (await shop.counts()).orders

    in_metadata = await post_json(client, "/orders", order | {"metadata": {"a": ["\ud800"]}})
    in_a_key = await post_json(client, "/orders", order | {"metadata": {"k\udfff": 1}})
    in_notes = await post_json(client, "/orders", order | {"notes": "n\ud800"})

    assert refused_fields(in_metadata) == ["metadata.a[0]"]
    assert refused_fields(in_a_key) == ["metadata"]
    assert refused_fields(in_notes) == ["notes"]
    assert (await shop.counts()).orders == before


async def test_a_customer_with_a_lone_surrogate_is_refused(client: httpx.AsyncClient) -> None:
    customer = {
        "email": f"s-{uuid.uuid4().hex[:8]}@example.com",
        "first_name": "A\udc00",
        "last_name": "B",
        "addresses": [
            {
                "address_type": "billing",
                "street_address": "1 Main St\ud800",
                "city": "Springfield",
                "postal_code": "12345",
            }
        ],
    }

    assert refused_fields(await post_json(client, "/customers", customer)) == [
        "first_name",
        "addresses[0].street_address",
    ]
