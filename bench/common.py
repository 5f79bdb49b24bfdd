"""Shared benchmark plumbing: a scratch database on the test server, seeding, JSON output."""

from __future__ import annotations

import asyncio
import json
import platform
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from gateway import Gateway, MigrationRunner, Settings
from gateway.configuration.settings import PostgresSettings
from gateway.postgres.server_runs import ServerRuns
from support.databases import database_url
from support.servers import server_url

RESULTS = Path(__file__).resolve().parent / "results"


@asynccontextmanager
async def scratch_gateway(pool_size: int, service: str = "postgres") -> AsyncIterator[Gateway]:
    """A gateway over a freshly created and migrated database on the server of ``service``
    (of ``scripts/services.sh``), dropped afterwards."""
    server = server_url(service)
    name = f"fanout_bench_{uuid.uuid4().hex[:10]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    url = database_url(server, name)
    try:
        connection = await _connect_once_replicated(url)
        try:
            await MigrationRunner(connection).apply()
        finally:
            await connection.close()
        settings = Settings(
            postgres=PostgresSettings(url=url, pool_min_size=pool_size, pool_max_size=pool_size)
        )
        async with await Gateway.connect(settings) as gateway:
            yield gateway
    finally:
        # A connection of its own: a benchmark may have restarted the server meanwhile.
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _connect_once_replicated(url: str, within: float = 60.0) -> asyncpg.Connection:
    """A connection to the new database at ``url``. Over a cluster's multi-host URL, the
    first hosts may be standbys that have not yet replayed its creation, and asyncpg moves to
    the next host only when one cannot be reached: wait for them."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _admin(server: str, statement: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def synthesize_order_events(
    gateway: Gateway, count: int, per_transaction: int, traced_share: float | None = None
) -> None:
    """``count`` order.placed events of distinct orders, each with a copy of a real order's
    payload (its ``id`` set to the event's order), committed ``per_transaction`` at a time.

    With ``traced_share``, each event carries a ``traceparent`` of a trace of its own, its
    sampled flag set for that share of them (as rows written with tracing on at that ratio)."""
    template = await gateway.pool.fetchval(
        "SELECT payload FROM outbox WHERE event_type = 'order.placed' LIMIT 1"
    )
    for start in range(0, count, per_transaction):
        await gateway.pool.execute(
            "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, version, event_type,"
            " payload, headers) SELECT gen_random_uuid(), 'order', id, 1, 'order.placed',"
            " jsonb_set($1::jsonb, '{id}', to_jsonb(id)),"
            " CASE WHEN $3::float8 IS NULL THEN '{}'::jsonb ELSE jsonb_build_object("
            "   'traceparent', '00-' || md5(random()::text) || '-'"
            "   || substr(md5(random()::text), 1, 16)"
            "   || CASE WHEN random() < $3 THEN '-01' ELSE '-00' END) END"
            " FROM (SELECT gen_random_uuid()::text AS id FROM generate_series(1, $2)) AS o",
            template,
            min(per_transaction, count - start),
            traced_share,
        )


async def server_runs_of(pool: asyncpg.Pool) -> ServerRuns:
    """The server run ``pool`` reaches, observed as ``Relay.connect``'s pool observes each of
    its connections, so that a benchmark's relay runs the checks of a production one (its
    reads tagged with the run, its commits checked against it)."""
    runs = ServerRuns()
    async with pool.acquire() as connection:
        await runs.observe(connection)
    return runs


def write_results(name: str, results: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``results`` with the machine's description to ``path`` (by default
    ``bench/results/<name>.json``)."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        **results,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
