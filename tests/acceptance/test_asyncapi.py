"""The AsyncAPI document of the events on Kafka: valid by the AsyncAPI project's own parser
(tools/asyncapi, `@asyncapi/parser` from npm), served by ``fanout serve`` behind the API key,
and true of what the relay really publishes: every record a flow through every event type
puts on a real Kafka broker, in one database and in sharded mode, matches its message."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from adapters.kafka import KafkaSink
from adapters.kafka_url import bootstrap_servers
from gateway import Gateway, Settings
from gateway.contract.asyncapi import KafkaTarget, asyncapi_document, kafka_targets
from gateway.operations.backfill import backfill
from gateway.relay import upkeep
from gateway.relay.sinks import build_sink
from gateway.sharding.relays import ShardedRelay
from gateway.version import version
from support.api_process import api_server, clean_environment, write_config
from support.servers import server_url
from support.sharding import connect_sharded, sharded_databases
from support.shop import REJECTED_NOTES, Shop, outbox_rejecting
from support.stores import store_settings
from tests.acceptance.payment_support import notification
from tests.acceptance.relay_support import World
from tests.asyncapi_conformance import Conformance, PublishedRecord, read_records
from tests.relay_settings import FAST

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "asyncapi"
NPM_CI_SECONDS = 600
API_KEY = "asyncapi-test-key-0123456789"


@pytest.fixture(scope="session")
def validator() -> Path:
    """The AsyncAPI validator's script, its packages installed (``npm ci``) if missing."""
    if not (TOOLS / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "npm is not installed: the AsyncAPI validator in tools/asyncapi needs Node.js "
                "(18 or newer) and npm (scripts/bootstrap.sh installs its packages)"
            )
        installed = subprocess.run(
            [npm, "ci"], cwd=TOOLS, capture_output=True, text=True, timeout=NPM_CI_SECONDS
        )
        assert installed.returncode == 0, f"npm ci failed in {TOOLS}:\n{installed.stderr}"
    return TOOLS / "validate.mjs"


def validate(script: Path, document: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None, "node is not installed: the AsyncAPI validator needs Node.js"
    return subprocess.run(
        [node, str(script), str(document)], capture_output=True, text=True, timeout=120
    )


def kafka_config() -> dict[str, Any]:
    return {"type": "kafka", "url": server_url("kafka"), "topic_prefix": "shop."}


@pytest.mark.parametrize(
    ("options", "servers"),
    [([], {"audit", "events"}), (["--sink", "events"], {"events"})],
    ids=["every kafka sink", "one kafka sink"],
)
def test_the_generated_document_is_valid_asyncapi_3(
    validator: Path, tmp_path: Path, options: list[str], servers: set[str]
) -> None:
    sinks = {"events": kafka_config(), "audit": {**kafka_config(), "topic_prefix": "audit."}}
    config = write_config(tmp_path, {"postgres": {"url": "postgresql://u@db/x"}, "sinks": sinks})
    document = tmp_path / "asyncapi.json"
    options = [*options, "--output", str(document)]

    generated = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "asyncapi", *options],
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=120,
    )
    assert generated.returncode == 0, generated.stderr
    checked = validate(validator, document)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("error", "warning"))], lines
    assert lines[-1] == f"{document}: valid AsyncAPI 3.0.0"
    assert set(json.loads(document.read_text())["servers"]) == servers


def test_a_broken_document_is_rejected_by_the_validator(validator: Path, tmp_path: Path) -> None:
    document = asyncapi_document([KafkaTarget()], version())
    references = document["operations"]["send-order-events"]["messages"]
    references.append({"$ref": "#/channels/order/messages/orderShipped"})
    document["components"]["messages"]["orderPlaced"]["payload"] = {"type": "text"}
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))

    checked = validate(validator, broken)

    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert (
        f"error invalid-ref at operations.send-order-events.messages.{len(references) - 1}.$ref: "
        "'#/channels/order/messages/orderShipped' does not exist"
    ) in checked.stdout, checked.stdout
    assert "at components.messages.orderPlaced.payload.type" in checked.stdout
    assert "not a valid AsyncAPI document" in checked.stdout


async def test_serve_publishes_the_document_behind_the_api_key(
    migrated_url: str, tmp_path: Path
) -> None:
    sections: dict[str, Any] = {
        "postgres": {"url": migrated_url},
        "api": {"key": API_KEY},
        "sinks": {"events": kafka_config(), "memory": {"type": "memory"}},
    }
    config = write_config(tmp_path, sections)
    expected = asyncapi_document(kafka_targets(Settings.model_validate(sections)), version())

    async with (
        api_server(config) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        anonymous = await http.get("/asyncapi.json")
        served = await http.get("/asyncapi.json", headers={"Authorization": f"Bearer {API_KEY}"})

    assert anonymous.status_code == 401
    assert served.status_code == 200, served.text
    assert served.json() == expected
    assert served.json()["channels"]["order"]["address"] == "shop.order"
    assert set(served.json()["servers"]) == {"events"}


def assert_conform(document: dict[str, Any], records: list[PublishedRecord]) -> set[str]:
    """Every record conforms to its message; the (topic, event type) of each."""
    conformance = Conformance(document)
    problems = {
        f"{r.topic} {dict(r.headers).get('event_type', b'?').decode()}": found
        for r in records
        if (found := conformance.problems(r))
    }
    assert not problems, problems
    return {f"{r.topic} {dict(r.headers)['event_type'].decode()}" for r in records}


def described(document: dict[str, Any], *channels: str) -> set[str]:
    """The (topic, event type) of every message of ``channels`` in the document."""
    messages = document["components"]["messages"]
    return {
        f"{document['channels'][c]['address']} {messages[m]['name']}"
        for c in channels
        for m in document["channels"][c]["messages"]
    }


def kafka_settings(tag: str) -> Settings:
    """Settings whose only sink is a Kafka sink with topics of its own (``<tag>.<type>``)."""
    return Settings.model_validate(
        {
            "postgres": {"url": "postgresql://unused/db"},
            "sinks": {"kafka": store_settings("kafka", tag)},
        }
    )


async def delete_topics(document: dict[str, Any]) -> None:
    """Delete the topics of the document's channels."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(server_url("kafka")))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        topics = [c["address"] for c in document["channels"].values() if c["address"] in existing]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


@pytest.fixture
async def kafka() -> AsyncIterator[tuple[KafkaSink, dict[str, Any]]]:
    """A started Kafka sink with topics of this test's own, and the document of what it
    publishes; its topics are deleted afterwards."""
    settings = kafka_settings(uuid.uuid4().hex[:10])
    sink = build_sink("kafka", settings.sinks["kafka"])
    assert isinstance(sink, KafkaSink)
    document = asyncapi_document(kafka_targets(settings), version())
    await sink.start()
    try:
        yield sink, document
    finally:
        await sink.close()
        await delete_topics(document)


async def make_overdue(gateway: Gateway, order_id: uuid.UUID) -> None:
    await gateway.pool.execute(
        "UPDATE orders SET payment_due_at = now() - interval '1 second' WHERE id = $1", order_id
    )


async def test_every_record_the_relay_publishes_matches_its_message(
    world: World, kafka: tuple[KafkaSink, dict[str, Any]]
) -> None:
    sink, document = kafka
    gateway, shop = world.gateway, world.shop
    customer, product = await shop.customer(), await shop.product(stock=100)

    def request() -> dict[str, Any]:
        return shop.order(customer, (product, 1))

    walked = await gateway.place_order(request(), idempotency_key=f"key-{uuid.uuid4()}")
    paid = await gateway.record_payment(notification(walked))  # payment.processed, confirmed
    for status in ("processing", "shipped", "delivered", "refunded"):
        await gateway.transition(walked.id, status)
    await gateway.transition((await gateway.place_order(request())).id, "cancelled")
    failed = await gateway.place_order(request())
    await gateway.record_payment(notification(failed, "failed"))  # failed, released, cancelled
    await gateway.record_payment(notification(failed, "failed"))  # failed, recorded only
    await gateway.record_payment(notification(failed))  # refund_required
    mismatched = await gateway.place_order(request())
    await gateway.record_payment(notification(mismatched, amount="0.01"))
    overdue = await gateway.place_order(request())
    await make_overdue(gateway, overdue.id)
    assert await upkeep.expire_unpaid_orders(gateway.pool) == 1  # timed_out, released, cancelled
    assert paid.order.status == "confirmed"

    await world.drain(sink)
    assert (await backfill(gateway.pool, sink)).orders == 5  # order.snapshot

    topics = [channel["address"] for channel in document["channels"].values()]
    records = await read_records(server_url("kafka"), topics)
    seen = assert_conform(document, records)
    assert seen == described(document, "order", "customer")
    outbox = await gateway.pool.fetchval("SELECT count(*) FROM outbox")
    assert len(records) == outbox + 5


async def test_every_record_of_sharded_mode_matches_its_message() -> None:
    """The reservation events, from the catalog's outbox."""
    tag = uuid.uuid4().hex[:10]
    document = asyncapi_document(kafka_targets(kafka_settings(tag)), version())
    async with sharded_databases() as own, await connect_sharded(own) as gateway:
        shop = Shop(gateway)
        customer, product = await shop.customer(), await shop.product(stock=100)
        order = await gateway.place_order(shop.order(customer, (product, 2)))  # reserved
        await gateway.transition(order.id, "cancelled")  # returned
        shard = gateway.sharding.shards[await gateway.sharding.shard_of_customer(customer.id)]
        async with outbox_rejecting(shard):
            with pytest.raises(asyncpg.RaiseError):  # reserved, then released at once
                await gateway.place_order(shop.order(customer, (product, 1), notes=REJECTED_NOTES))
        kept = await gateway.place_order(shop.order(customer, (product, 3)))
        await gateway.pool.execute(
            "UPDATE inventory_reservations SET status = 'released' WHERE order_id = $1", kept.id
        )
        repaired = await gateway.sharding.reconcile()  # retaken
        assert [(b.order_id, b.repaired) for b in repaired.breaks] == [(kept.id, True)]

        settings = own.settings().model_copy(
            update={"relay": FAST, "sinks": kafka_settings(tag).sinks}
        )
        try:
            async with await ShardedRelay.connect(settings) as relay:
                await asyncio.wait_for(relay.run(until_idle=True), 120)
            topics = [channel["address"] for channel in document["channels"].values()]
            seen = assert_conform(document, await read_records(server_url("kafka"), topics))
        finally:
            await delete_topics(document)
    assert described(document, "reservation") <= seen
    assert {f"{tag}.order order.placed", f"{tag}.customer customer.created"} <= seen
