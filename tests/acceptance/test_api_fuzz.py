"""The HTTP API fuzzed from its own OpenAPI document by schemathesis, against ``fanout serve``
on a real PostgreSQL (one database, and sharded mode's catalog and two shards): every check,
every phase (examples, coverage, fuzzing, and stateful sequences that follow the document's
links from a placed order to its transitions).

A failure of any kind fails the test. Each mode runs twice: with a fixed seed, so that every
run covers the same cases, and with a seed drawn afresh on every run, so that runs over time
cover more; the drawn seed is printed (and named in a failure) with the command that replays
it. ``FANOUT_TEST_FUZZ_SEED`` (a number) runs that seed alone; ``FANOUT_TEST_FUZZ_EXAMPLES``
(cases per operation) makes a longer or shorter run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import Gateway, Settings
from support.api_process import api_server, clean_environment, write_config
from support.sharding import sharded_databases
from support.shop import Shop, customer_request
from tests.acceptance.conftest import DatabaseFactory, create_migrated_database, settings_for

ROOT = Path(__file__).resolve().parents[2]
FIXED_SEED = 1
SEEDS = (
    {"given": int(os.environ["FANOUT_TEST_FUZZ_SEED"])}
    if os.environ.get("FANOUT_TEST_FUZZ_SEED")
    else {"fixed": FIXED_SEED, "drawn": random.SystemRandom().randrange(2**32)}
)
EXAMPLES = int(os.environ.get("FANOUT_TEST_FUZZ_EXAMPLES", "150"))
"""Cases per operation and seed: two seeds of 150 cost what one of 300 did."""
MAX_ITEMS = 20
WEBHOOK_SECRET = "fuzz-webhook-secret-0123456789"
SEEDED_ORDERS = 5


async def seed_references(gateway: Gateway, path: Path) -> None:
    """Records the generated requests can refer to, written where the hooks read them."""
    category = await gateway.create_category({"name": "Fuzzed", "slug": "fuzzed"})
    customers = []
    for number in range(5):
        customer = await gateway.create_customer(
            customer_request(f"fuzz-{number}@example.com", f"Customer {number}", "1 Main St")
        )
        billing, shipping = customer.addresses
        customers.append(
            {
                "customer_id": str(customer.id),
                "billing_address_id": str(billing.id),
                "shipping_address_id": str(shipping.id),
            }
        )
    products = [
        str(
            (
                await gateway.create_product(
                    {
                        "sku": f"FUZZ-{number}",
                        "name": f"Fuzzed product {number}",
                        "base_price": "1.25",
                        "inventory_quantity": 2_000_000_000,
                    }
                )
            ).id
        )
        for number in range(MAX_ITEMS)
    ]
    buyer = customers[0]
    orders = [
        str(
            (
                await gateway.place_order(
                    {
                        "customer_id": buyer["customer_id"],
                        "billing_address_id": buyer["billing_address_id"],
                        "shipping_address_id": buyer["shipping_address_id"],
                        "items": [{"product_id": products[0], "quantity": 1}],
                    }
                )
            ).id
        )
        for _ in range(SEEDED_ORDERS)
    ]
    text = json.dumps(
        {
            "customers": customers,
            "products": products,
            "category_id": str(category.id),
            "orders": orders,
            "webhook_secret": WEBHOOK_SECRET,
        }
    )
    await asyncio.to_thread(path.write_text, text)


@asynccontextmanager
async def deployment(
    mode: str, create_database: DatabaseFactory
) -> AsyncIterator[tuple[Settings, dict[str, Any]]]:
    """Fresh databases for ``mode`` (one database, or a catalog and two shards): settings
    over them, and the configuration file's ``postgres`` section."""
    if mode == "single":
        url = await create_migrated_database(create_database)
        yield settings_for(url), {"url": url}
        return
    async with sharded_databases() as found:
        shards = {name: {"url": url} for name, url in found.shards.items()}
        yield found.settings(), {"url": found.catalog, "shards": shards}


def replay_line(seed: int, mode: str) -> str:
    """How to run this seed again."""
    return (
        f"schemathesis seed {seed} ({mode}); replay with: FANOUT_TEST_FUZZ_SEED={seed} "
        f"pytest {Path(__file__).relative_to(ROOT)} -k {mode}"
    )


@pytest.mark.parametrize("seed", SEEDS.values(), ids=SEEDS.keys())
@pytest.mark.parametrize("mode", ["single", "sharded"])
async def test_the_api_holds_up_to_schemathesis_with_every_check(
    create_database: DatabaseFactory, tmp_path: Path, mode: str, seed: int
) -> None:
    replay = replay_line(seed, mode)
    print(replay)
    references = tmp_path / "references.json"
    async with (
        deployment(mode, create_database) as (settings, postgres),
        await Gateway.connect(settings) as gateway,
    ):
        await seed_references(gateway, references)
        config = write_config(
            tmp_path,
            {
                "postgres": postgres,
                "orders": {"max_items": MAX_ITEMS},
                "payments": {"webhook_secret": [WEBHOOK_SECRET]},
                "sinks": {"memory": {"type": "memory"}},
            },
        )
        async with api_server(config) as server:
            fuzzer = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{server.url}/openapi.json",
                "--checks", "all",
                "--max-examples", str(EXAMPLES),
                "--seed", str(seed),
                "--workers", "1",
                "--generation-database", "none",
                "--no-color",
                env={
                    **clean_environment(),
                    "SCHEMATHESIS_HOOKS": "tests.acceptance.fuzz_hooks",
                    "FANOUT_TEST_FUZZ_REFERENCES": str(references),
                    "PYTHONPATH": str(ROOT),
                },
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(fuzzer.communicate(), 900)
            report = output.decode(errors="replace")
            async with httpx.AsyncClient(base_url=server.url) as client:
                answered = answers_by_route((await client.get("/metrics")).text)
            server_log = server.server.log_text
        placed = (await Shop(gateway).counts()).orders - SEEDED_ORDERS

    assert fuzzer.returncode == 0, f"{replay}\n{report}\n--- fanout serve ---\n{server_log}"
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, f"{replay}\n{report}"
    assert "Internal error" not in server_log and "Traceback" not in server_log, replay
    assert not any(status.startswith("5") for _, status in answered), (replay, answered)
    # Generated orders were placed, then their transitions asked for: answers other than 404
    # (no such order) and 422 (a malformed request) are about an order that exists.
    transitions = {
        status: count
        for (route, status), count in answered.items()
        if route == "POST /orders/{order_id}/transitions"
    }
    assert placed > 0 and answered[("POST /orders", "201")] == placed
    assert sum(n for status, n in transitions.items() if status not in {"404", "422"}) > 0, (
        transitions
    )
    # Signed notifications got past the signature to the payment rules.
    webhook = {
        status: count
        for (route, status), count in answered.items()
        if route == "POST /webhooks/payments"
    }
    assert webhook.get("200", 0) > 0 and webhook.get("401", 0) > 0, webhook


def answers_by_route(metrics: str) -> dict[tuple[str, str], float]:
    """(``METHOD route``, status) -> requests answered, from the server's Prometheus text."""
    answered: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name != "fanout_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                key = (f"{labels['method']} {labels['route']}", labels["status"])
                answered[key] = sample.value
    return answered
