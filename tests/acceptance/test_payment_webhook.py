"""``POST /webhooks/payments`` and ``GET /orders/{id}/events`` on a real ``fanout serve``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway import Gateway, Order
from gateway.payments.signature import SIGNATURE_HEADER, signature_header
from support.api_process import ApiServer, api_server, write_config
from support.shop import Shop
from tests.acceptance.payment_support import notification

API_KEY = "test-api-key-0123456789"
CURRENT = "whsec-current-0123456789"
PREVIOUS = "whsec-previous-0123456789"
PROBLEM = "application/problem+json"
TOLERANCE_SECONDS = 300


@pytest.fixture(scope="module")
async def server(
    migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """An API server with an API key, and two webhook secrets (a rotation under way)."""
    config = write_config(
        tmp_path_factory.mktemp("webhook"),
        {
            "postgres": {"url": migrated_url},
            "api": {"key": API_KEY},
            "payments": {
                "webhook_secret": [CURRENT, PREVIOUS],
                "tolerance_seconds": TOLERANCE_SECONDS,
            },
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    async with api_server(config) as running:
        yield running


@pytest.fixture
async def client(server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client without the API key: providers do not hold it."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture
async def order(gateway: Gateway, shop: Shop) -> Order:
    return await gateway.place_order(shop.order(await shop.customer(), (await shop.product(), 2)))


def signed(body: bytes, secret: str = CURRENT, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(body, [secret], stamp),
    }


def encoded(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


async def written(gateway: Gateway, order: Order) -> tuple[int, int]:
    """Payments recorded and events in the order's stream."""
    payments = await gateway.pool.fetchval(
        "SELECT count(*) FROM payments WHERE order_id = $1", order.id
    )
    events = await gateway.pool.fetchval(
        "SELECT count(*) FROM order_events WHERE stream_id = $1", order.id
    )
    return payments, events


async def test_a_signed_notification_confirms_and_a_redelivery_writes_nothing(
    client: httpx.AsyncClient, gateway: Gateway, order: Order
) -> None:
    body = encoded(notification(order))
    headers = signed(body)

    first = await client.post("/webhooks/payments", content=body, headers=headers)
    again = await client.post("/webhooks/payments", content=body, headers=headers)

    assert first.status_code == 200, first.text
    receipt = first.json()
    assert receipt["outcome"] == "confirmed" and receipt["replayed"] is False
    placed = receipt["order"]
    assert (placed["status"], placed["payment_status"], placed["version"]) == (
        "confirmed",
        "paid",
        3,
    )
    assert again.status_code == 200
    assert again.json() == {**receipt, "replayed": True}
    assert await written(gateway, order) == (1, 3)

    history = await client.get(
        f"/orders/{order.id}/events", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert history.status_code == 200
    events = history.json()["events"]
    assert [(e["version"], e["event_type"]) for e in events] == [
        (1, "order.placed"),
        (2, "payment.processed"),
        (3, "order.confirmed"),
    ]
    assert events[1]["payload"]["payment"]["outcome"] == "confirmed"


async def test_a_signature_with_the_previous_secret_is_accepted(
    client: httpx.AsyncClient, order: Order
) -> None:
    body = encoded(notification(order, "failed"))
    response = await client.post("/webhooks/payments", content=body, headers=signed(body, PREVIOUS))
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert (receipt["outcome"], receipt["order"]["status"]) == ("cancelled", "cancelled")


@pytest.mark.parametrize("fault", ["wrong secret", "tampered body", "stale", "future", "missing"])
async def test_a_bad_signature_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, gateway: Gateway, order: Order, fault: str
) -> None:
    body = encoded(notification(order))
    now = int(time.time())
    # The exact edge of the tolerance is proven with a fixed clock in the unit tests; here the
    # request is sent a moment after ``now`` is read, so stay a full tolerance clear of it.
    outside = 2 * TOLERANCE_SECONDS
    headers = {
        "wrong secret": signed(body, "whsec-unknown-0123456789"),
        "tampered body": signed(body.replace(b"succeeded", b"failed")),
        "stale": signed(body, timestamp=now - outside),
        "future": signed(body, timestamp=now + outside),
        "missing": {"Content-Type": "application/json"},
    }[fault]

    response = await client.post("/webhooks/payments", content=body, headers=headers)

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == SIGNATURE_HEADER
    assert await written(gateway, order) == (0, 1)


async def test_a_signed_but_bad_notification_names_the_field(
    client: httpx.AsyncClient, gateway: Gateway, order: Order
) -> None:
    not_json = b'{"payment_id": '
    malformed = await client.post("/webhooks/payments", content=not_json, headers=signed(not_json))
    bad_amount = encoded({**notification(order), "amount": 12})
    invalid = await client.post(
        "/webhooks/payments", content=bad_amount, headers=signed(bad_amount)
    )
    unknown_order = encoded({**notification(order), "order_id": str(uuid.uuid4())})
    unknown = await client.post(
        "/webhooks/payments", content=unknown_order, headers=signed(unknown_order)
    )
    a_list = b"[]"
    listed = await client.post("/webhooks/payments", content=a_list, headers=signed(a_list))

    assert malformed.status_code == 400
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "amount"
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "order_id"
    assert listed.status_code == 422 and listed.json()["errors"][0]["field"] == "(body)"
    assert await written(gateway, order) == (0, 1)


async def test_a_payment_id_reused_for_other_content_conflicts(
    client: httpx.AsyncClient, order: Order
) -> None:
    paid = notification(order)
    body = encoded(paid)
    assert (await client.post("/webhooks/payments", content=body, headers=signed(body))).is_success
    other = encoded({**paid, "status": "failed"})
    response = await client.post("/webhooks/payments", content=other, headers=signed(other))
    assert response.status_code == 409
    assert "different status" in response.json()["detail"]


async def test_the_history_of_an_unknown_order_is_404_and_of_a_bad_id_422(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    unknown = await client.get(f"/orders/{uuid.uuid4()}/events", headers=headers)
    bad = await client.get("/orders/seven/events", headers=headers)
    unauthorised = await client.get(f"/orders/{uuid.uuid4()}/events")
    assert (unknown.status_code, bad.status_code, unauthorised.status_code) == (404, 422, 401)
