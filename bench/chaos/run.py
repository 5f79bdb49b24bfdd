"""One chaos run: the database and configuration, the load through the fault schedule, the
drain, and the check of every order in every store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import yaml

from adapters.readback import OrderSpan, ReadBack
from bench.chaos.client import ChaosClient, ClientCounts
from bench.chaos.move_check import check_moved_customers, move_findings
from bench.chaos.moves import MoveAttempt, move_customer, moves_summary, resume_moves
from bench.chaos.plan import (
    HAPPY_PATH,
    ChaosPlan,
    Fault,
    FaultWindow,
    explained,
    keep_moving,
    settled_at,
    unavailable_for,
)
from bench.chaos.processes import FanoutProcess, free_port, services
from bench.chaos.saga_check import initial_stock, saga_findings, saga_report, units_held
from bench.chaos.watch import ended_on_their_own, state_of, watched
from bench.common import scratch_gateway
from gateway import Gateway
from gateway.operations.verify import verify
from gateway.postgres import outbox
from gateway.postgres.database import DatabaseUnavailable, connect
from gateway.postgres.queries import query
from gateway.postgres.topology import databases
from gateway.relay.errors import DATABASE_ERRORS
from gateway.relay.tables import list_dead_letters
from gateway.sharding import move_records
from support.eventually import eventually
from support.ha_cluster import HaCluster
from support.sharding import sharded_databases
from support.shop import customer_request
from support.stores import drop_namespace, make_sink, store_settings

log = logging.getLogger("bench.chaos")

DEAD_LETTERS_LISTED = 100_000
ERRORS_SHOWN = 3


def config_for(
    url: str,
    tag: str,
    plan: ChaosPlan,
    port: int,
    directory: Path,
    shards: Mapping[str, str] | None = None,
) -> Path:
    """The configuration the API and the relays share; with ``shards`` (each shard's URL by
    name), sharded mode over the catalog at ``url``."""
    path = directory / "gateway.yaml"
    postgres: dict[str, Any] = {"url": url, "pool_max_size": 20}
    if shards:
        postgres["shards"] = {name: {"url": shard} for name, shard in shards.items()}
        postgres["reservation_seconds"] = plan.reservation_seconds
    config = {
        "postgres": postgres,
        "api": {"port": port},
        # The run's orders are never paid: with a payment deadline, a run longer than it would
        # see the relays cancel them, changes the client did not make.
        "orders": {"payment_timeout_seconds": None},
        "relay": {
            "batch_size": 500,
            "poll_interval_seconds": 0.2,
            "lease_ttl_seconds": 6,
            "backoff_max_seconds": 2,
            # A transient failure the store's health check does not call an outage (a store
            # answering its ping before it takes writes again) retries for minutes, not
            # seconds: a busy machine brings a store back slowly.
            "max_attempts": 100,
            "stats_interval_seconds": 2,
            # In sharded mode, also how often each relay sweeps the saga's reservations.
            "payment_sweep_interval_seconds": 1,
        },
        "sinks": {kind: store_settings(kind, tag) for kind in plan.stores},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def seed(gateway: Gateway, customers: int, products: int) -> list[dict[str, Any]]:
    """Order requests over freshly made customers and well-stocked products."""
    people = []
    for number in range(customers):
        email = f"chaos-{number}-{uuid.uuid4().hex[:6]}@example.com"
        person = await gateway.create_customer(
            customer_request(email, f"Customer {number}", f"{number} Chaos St", "Chaos")
        )
        people.append(person)
    stock = [
        await gateway.create_product(
            {
                "sku": f"CHAOS-{uuid.uuid4().hex[:10]}",
                "name": f"Chaos product {number}",
                "base_price": f"{5 + number % 40}.99",
                "inventory_quantity": 1_000_000_000,
            }
        )
        for number in range(products)
    ]
    return [
        {
            "customer_id": str(person.id),
            "billing_address_id": str(person.addresses[0].id),
            "shipping_address_id": str(person.addresses[1].id),
            "items": [
                {"product_id": str(product.id), "quantity": 1 + index % 3}
                for index, product in enumerate(random.sample(stock, 1 + number % 3))
            ],
        }
        for number, person in enumerate(people * 4)
    ]


class Chaos:
    """One chaos run over a database, an API process and relay processes."""

    def __init__(
        self, plan: ChaosPlan, gateway: Gateway, tag: str, config: Path, logs: Path
    ) -> None:
        self.plan = plan
        self.gateway = gateway
        self.tag = tag
        """The stores' namespace of this run."""
        self.config = config
        self.databases = {d.name: d.postgres for d in databases(gateway.settings.postgres)}
        """Each database with an outbox: the one database, or the catalog and every shard."""
        self.api = FanoutProcess("api", config, ["serve"], logs)
        self.relays = [
            FanoutProcess(f"relay-{n}", config, ["relay"], logs) for n in range(plan.relays)
        ]
        self.windows: list[FaultWindow] = []
        self.timeline: list[dict[str, Any]] = []
        self.counts = ClientCounts()
        self.origin = 0.0
        self.cluster = HaCluster.from_environment() if plan.cluster else None
        self.client: ChaosClient | None = None
        self.resumes: list[asyncio.Task[None]] = []
        self.moving = asyncio.Lock()
        """Held by a move of the primary: the next one waits for it, and for the cluster to be
        whole again."""
        self.move_attempts: list[MoveAttempt] = []
        """Each customer move the run tried (sharded mode), in the order they ended."""

    def now(self) -> float:
        """Seconds since the load began."""
        return round(time.perf_counter() - self.origin, 2)

    async def wait_for_api(self, url: str, within: float = 120) -> None:
        """Until ``/healthz`` answers."""
        deadline = time.perf_counter() + within
        async with httpx.AsyncClient(base_url=url, timeout=2) as probe:
            while time.perf_counter() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the API did not answer within {within} s; see {self.api.log_path}")

    @property
    def sharded(self) -> Gateway | None:
        """The gateway in sharded mode; ``None`` over one database."""
        return self.gateway if self.gateway.topology.sharded else None

    @property
    def pools(self) -> list[asyncpg.Pool]:
        """A pool of each database with an outbox (the catalog first in sharded mode)."""
        if self.gateway.topology.sharded:
            return [self.gateway.pool, *self.gateway.order_pools().values()]
        return [self.gateway.pool]

    @property
    def order_pools(self) -> list[asyncpg.Pool]:
        """A pool of each database holding orders: the one database, or every shard."""
        return list(self.gateway.order_pools().values())

    async def kill_api(self, fault: Fault, url: str) -> None:
        """SIGKILL the API and restart it; in sharded mode, at a moment some placement holds
        units (reserved, not yet committed), which then lapse and the sweeper settles."""
        if self.sharded is not None:
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline:
                with contextlib.suppress(*DATABASE_ERRORS, TimeoutError):
                    if await asyncio.wait_for(units_held(self.gateway.pool), 2):
                        break
                await asyncio.sleep(0.005)
        await self.api.kill_and_restart(fault.seconds)
        await self.wait_for_api(url)

    async def inject(self, fault: Fault, url: str) -> None:
        """Run one fault at its time."""
        await asyncio.sleep(max(0.0, fault.at - (time.perf_counter() - self.origin)))
        window = FaultWindow(fault.kind, fault.target, self.now())
        self.windows.append(window)
        match fault.kind:
            case "kill-relay":
                await self.relays[int(fault.target)].kill_and_restart(fault.seconds)
            case "kill-api":
                await self.kill_api(fault, url)
            case "stop-store" | "stop-shard":
                await services("down", fault.target)
                await asyncio.sleep(fault.seconds)
                await services("up", fault.target)
            case "restart-postgres":
                await services("down", "postgres")
                await services("up", "postgres")
            case "switchover" | "failover" | "partition-primary":
                await self.move_primary(fault, window)
                return
            case "move-customers":
                await self.move_customers(fault)
        window.ended = self.now()

    async def move_customers(self, fault: Fault) -> None:
        """For ``fault.seconds`` (see ``keep_moving``), ``plan.movers`` at a time: move a
        customer the client placed orders for to another shard with ``fanout shards move``,
        as an operator does, then the next one; each attempt is recorded with its outcome and
        pause."""
        began = time.perf_counter()
        earlier = len(self.move_attempts)
        moving: set[str] = set()

        def going_on() -> bool:
            made = sum(a.outcome == "done" for a in self.move_attempts[earlier:])
            return keep_moving(time.perf_counter() - began, fault.seconds, made)

        async def mover() -> None:
            while going_on():
                customer = self.customer_to_move(moving)
                if customer is None:
                    await asyncio.sleep(0.2)
                    continue
                moving.add(customer)
                try:
                    await self.move_one(customer)
                finally:
                    moving.discard(customer)

        await asyncio.gather(*(mover() for _ in range(self.plan.movers)))

    def customer_to_move(self, moving: set[str]) -> str | None:
        """A customer the client has placed orders for, not being moved now; none yet: None."""
        assert self.client is not None
        customers = {order["customer_id"] for _, order in self.client.acknowledged} - moving
        return random.choice(sorted(customers)) if customers else None

    async def move_one(self, customer: str) -> None:
        """Move ``customer`` to another shard than the directory names now. While the catalog
        does not answer (its server restarting) there is no move to try: wait a second."""
        try:
            source = await asyncio.wait_for(
                self.gateway.pool.fetchval(query("directory_shard_of"), uuid.UUID(customer)), 5
            )
        except (TimeoutError, *DATABASE_ERRORS) as error:
            log.info("no move of %s at %.1f s: the catalog: %r", customer, self.now(), error)
            await asyncio.sleep(1.0)
            return
        target = random.choice([name for name in self.gateway.sharding.shards if name != source])
        attempt = await move_customer(self.config, customer, source, target)
        log.info("move of %s at %.1f s: %s", customer, self.now(), attempt)
        self.move_attempts.append(attempt)

    async def finish_moves(self) -> dict[str, Any]:
        """After the faults: when a fault cut a move off (its command failed mid-move),
        ``fanout shards move --resume`` finishes it, as an operator does; then how many are
        left."""
        cut_off = len(await move_records.unfinished(self.gateway.pool))
        resumed = await resume_moves(self.config) if cut_off else {}
        left = await move_records.unfinished(self.gateway.pool)
        return {"cut_off": cut_off, "resumed": resumed, "unfinished_after_resume": len(left)}

    async def check_moves(self, url: str, finished: dict[str, Any]) -> dict[str, Any]:
        """The moves' report: what they came to, the resume, and the check of every
        acknowledged order of each customer a move was tried for through the API."""
        assert self.client is not None
        tried = {attempt.customer_id for attempt in self.move_attempts}
        orders: dict[str, list[str]] = {customer: [] for customer in sorted(tried)}
        for _, order in self.client.acknowledged:
            if order["customer_id"] in orders:
                orders[order["customer_id"]].append(order["id"])
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            check = await check_moved_customers(
                http, self.gateway.pool, self.gateway.sharding.shards, orders
            )
        return {**moves_summary(self.move_attempts), **finished, "check": check}

    async def move_primary(self, fault: Fault, window: FaultWindow) -> None:
        """Move the cluster's primary as ``fault`` says; the window ends once the new primary
        runs. Then measure how soon the relays deliver again, and wait for the old primary to
        stream from the new one (the next fault needs the cluster whole)."""
        cluster = self.cluster
        assert cluster is not None, "a primary move needs ChaosPlan.cluster"
        async with self.moving:
            await self.cluster_whole(cluster)
            window.began = self.now()
            await self._move_primary(cluster, fault, window)

    async def _move_primary(self, cluster: HaCluster, fault: Fault, window: FaultWindow) -> None:
        old = await cluster.wait_for_leader()
        match fault.kind:
            case "switchover":
                new = await cluster.switchover()
            case "failover":
                await cluster.kill_primary_postmaster()
                new = await cluster.wait_for_leader(excluding=old.name, within=120)
            case _:
                await cluster.partition(old.name)
                try:
                    new = await cluster.wait_for_leader(excluding=old.name, within=120)
                    await asyncio.sleep(max(0.0, window.began + fault.seconds - self.now()))
                finally:
                    await cluster.heal(old.name)
        window.ended = self.now()
        window.primary = (old.name, new.name)
        self.resumes.append(asyncio.create_task(self.measure_resume(window)))
        await self.cluster_whole(cluster)

    async def cluster_whole(self, cluster: HaCluster) -> None:
        """Until a leader runs with every other node streaming from it and, in a synchronous
        mode, one of them is its synchronous standby (Patroni fails over only to that one: a
        primary that crashes before it is named is restarted in place)."""
        await cluster.wait_for_streaming_replicas(len(cluster.nodes) - 1, within=180)
        if self.plan.cluster_mode != "async":

            async def named() -> bool:
                return any(m.role == "sync_standby" for m in await cluster.members())

            await eventually(named, within=180)

    async def measure_resume(self, window: FaultWindow) -> None:
        """How soon the relays deliver after a primary moved: from the first order placed
        after it was acknowledged to that order in a store."""
        assert self.client is not None and window.ended is not None
        acknowledged = self.client.acknowledged
        ended = window.ended
        await eventually(lambda: any(t >= ended for t, _ in acknowledged), within=120)
        acked_at, order = next((t, o) for t, o in acknowledged if t >= ended)
        store = "redis" if "redis" in self.plan.stores else self.plan.stores[0]
        sink = make_sink(store, self.tag)
        try:
            assert isinstance(sink, ReadBack)
            span = OrderSpan(
                datetime.fromisoformat(order["created_at"]),
                datetime.fromisoformat(order["updated_at"]),
            )

            async def delivered() -> bool:
                return bool(await sink.projected_orders({order["id"]: span}))

            await eventually(delivered, within=120)
            window.resume_seconds = round(self.now() - acked_at, 3)
        finally:
            await sink.close()

    async def sample(self) -> None:
        """Once a second: each sink's backlog and the age of its oldest undelivered event (over
        every database: the sum, and the oldest)."""
        connections: dict[str, asyncpg.Connection] = {}
        while True:
            await asyncio.sleep(1.0)
            row: dict[str, Any] = {
                "t": self.now(),
                "placed": self.counts.placed,
                "failed_attempts": sum(self.counts.failed_attempts.values()),
                "backlog": {},
                "oldest_undelivered_seconds": {},
            }
            backlogs: dict[str, int] = {}
            ages: dict[str, float] = {}
            try:
                for name, postgres in self.databases.items():
                    connection = connections.get(name)
                    if connection is None or connection.is_closed():
                        connection = await asyncio.wait_for(connect(postgres), 2)
                        connections[name] = connection
                    for backlog in await asyncio.wait_for(outbox.backlog(connection), 5):
                        backlogs[backlog.sink] = backlogs.get(backlog.sink, 0) + backlog.events
                        age = backlog.oldest_age_seconds or 0.0
                        ages[backlog.sink] = max(ages.get(backlog.sink, 0.0), age)
            except (TimeoutError, *DATABASE_ERRORS, DatabaseUnavailable) as error:
                # PostgreSQL (or a shard) is restarting: this second has no reading.
                log.info("no backlog reading at %.1f s: %r", row["t"], error)
                connections.pop(name, None)
            else:
                row["backlog"], row["oldest_undelivered_seconds"] = backlogs, ages
            self.timeline.append(row)

    async def drive(self, client: ChaosClient, requests: list[dict[str, Any]]) -> float:
        """Place the plan's orders at its rate, moving some of them along; how long it took."""
        slots = asyncio.Semaphore(self.plan.in_flight)
        lifecycles: set[asyncio.Task[None]] = set()

        async def lifecycle(request: dict[str, Any]) -> None:
            try:
                order = await client.place(request)
                if order is None or random.random() >= self.plan.transition_share:
                    return
                for status in HAPPY_PATH[: random.randint(1, len(HAPPY_PATH))]:
                    order = await client.transition(order, status)
                    if order is None:
                        return
            finally:
                slots.release()

        try:
            for number in range(self.plan.orders):
                due = number / self.plan.rate - (time.perf_counter() - self.origin)
                await asyncio.sleep(max(0.0, due))
                await slots.acquire()
                task = asyncio.create_task(lifecycle(requests[number % len(requests)]))
                lifecycles.add(task)
                task.add_done_callback(lifecycles.discard)
            await asyncio.gather(*lifecycles)
        finally:
            for task in list(lifecycles):
                task.cancel()
        return self.now()

    @property
    def processes(self) -> list[FanoutProcess]:
        """The API and the relays."""
        return [self.api, *self.relays]

    async def drain(self) -> bool:
        """Until no sink has a backlog (or the plan's drain timeout passes)."""
        deadline = time.perf_counter() + self.plan.drain_timeout_seconds
        while time.perf_counter() < deadline:
            backlogs: Counter[str] = Counter()
            for pool in self.pools:
                async with pool.acquire() as connection:
                    backlogs.update({b.sink: b.events for b in await outbox.backlog(connection)})
            if all(backlogs.get(store, 1) == 0 for store in self.plan.stores):
                return True
            await asyncio.sleep(1.0)
        return False

    async def run(self, url: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Start the processes, drive the load through the faults, drain, and report."""
        stock = await initial_stock(self.gateway.pool) if self.sharded is not None else {}
        await self.api.start()
        await self.wait_for_api(url)
        for relay in self.relays:
            await relay.start()
        client = self.client = ChaosClient(url, self.counts, 0.0)
        self.origin = client.origin = time.perf_counter()
        sampler = asyncio.create_task(self.sample())
        faults = [asyncio.create_task(self.inject(fault, url)) for fault in self.plan.faults]
        try:
            load_seconds = await watched(self.drive(client, requests), self.processes)
            await watched(asyncio.gather(*faults), self.processes)
            # Pooled connections died with the PostgreSQL restarts.
            for pool in self.pools:
                await pool.expire_connections()
            finished = await self.finish_moves() if self.moves_planned else None
            drained = await watched(self.drain(), self.processes)
            drain_seconds = self.now() - load_seconds
            moves = await self.check_moves(url, finished) if finished is not None else None
            await asyncio.wait_for(asyncio.gather(*self.resumes), 60)
            exited = ended_on_their_own(state_of(process) for process in self.processes)
        finally:
            for task in [*faults, *self.resumes]:
                task.cancel()
            sampler.cancel()
            await client.close()
            await self.api.stop()
            for relay in self.relays:
                await relay.stop()
        report = await self.report(client, load_seconds, drained, drain_seconds, exited)
        if moves is not None:
            report["moves"] = moves
        if self.sharded is not None:
            report["saga"] = await saga_report(self.sharded, stock, self.config)
        return report

    @property
    def moves_planned(self) -> bool:
        """Whether the fault schedule moves customers."""
        return any(fault.kind == "move-customers" for fault in self.plan.faults)

    async def report(
        self,
        client: ChaosClient,
        load_seconds: float,
        drained: bool,
        drain_seconds: float,
        exited: list[str],
    ) -> dict[str, Any]:
        """Every order of PostgreSQL checked in every store, and what the client saw."""
        stores: dict[str, Any] = {}
        for kind in self.plan.stores:
            sink = make_sink(kind, self.tag)
            try:
                assert isinstance(sink, ReadBack)
                stores[kind] = (await verify(self.order_pools, kind, sink)).counts()
            finally:
                await sink.close()
        in_postgres = moved = 0
        for pool in self.order_pools:
            in_postgres += await pool.fetchval("SELECT count(*) FROM orders")
            moved += await pool.fetchval("SELECT coalesce(sum(version - 1), 0) FROM orders")
        # Every event of the run is valid: a dead letter is an event a store never got.
        letters = []
        for pool in self.pools:
            async with pool.acquire() as connection:
                letters += await list_dead_letters(connection, None, DEAD_LETTERS_LISTED)
        for window in self.windows:
            if window.ended is not None:
                window.settled = settled_at(window.ended, client.successes)
                window.unavailable_seconds = unavailable_for(window, client.failures)
        acknowledged = {order["id"] for _, order in client.acknowledged}
        for pool in self.order_pools:
            found = await pool.fetch(
                "SELECT id::text FROM orders WHERE id = ANY($1::uuid[])", list(acknowledged)
            )
            acknowledged -= {row["id"] for row in found}
        missing = sorted(acknowledged)
        unexplained = [
            asdict(failure) for failure in client.failures if not explained(failure, self.windows)
        ]
        counts = self.counts
        return {
            "plan": {**asdict(self.plan), "faults": len(self.plan.faults)},
            "load_seconds": load_seconds,
            "achieved_order_rate": round(counts.placed / load_seconds, 1),
            "drained": drained,
            "drain_seconds": round(drain_seconds, 1),
            "processes_exited": exited,
            "orders": {
                "placed": counts.placed,
                "in_postgres": in_postgres,
                "transitions": counts.transitions,
                "transitions_in_postgres": moved,
                "acknowledged_missing": len(missing),
                "acknowledged_missing_ids": missing[:ERRORS_SHOWN],
            },
            "requests": {
                "attempts": counts.attempts,
                "failed_attempts_by_kind": dict(counts.failed_attempts),
                "unexplained_failures": unexplained,
                "operations_given_up": dict(counts.operations_given_up),
            },
            "duplicates_absorbed": {
                "placements_replayed_by_idempotency_key": counts.placements_replayed,
                "transitions_found_already_applied": counts.transitions_found_applied,
                "placements_sent_again_when_asked": dict(counts.placements_sent_again),
            },
            "stores": stores,
            "dead_letters": summarize_dead_letters(letters),
            "faults": [asdict(window) for window in self.windows],
            "timeline": self.timeline,
        }


@contextlib.asynccontextmanager
async def scratch_databases(plan: ChaosPlan) -> AsyncIterator[tuple[Gateway, dict[str, str]]]:
    """A gateway over fresh databases, and each shard's URL: one database, or in sharded mode
    a catalog on ``postgres`` and a shard on each of ``postgres-shard-a`` and ``-b``."""
    if not plan.shards:
        service = "postgres-ha" if plan.cluster else "postgres"
        async with scratch_gateway(pool_size=4, service=service) as gateway:
            yield gateway, {}
        return
    async with sharded_databases() as found:
        gateway = await Gateway.connect(found.settings(pool_max_size=8))
        try:
            yield gateway, found.shards
        finally:
            await gateway.close()


@contextlib.asynccontextmanager
async def chaos_world(plan: ChaosPlan, directory: Path) -> AsyncIterator[tuple[Chaos, str]]:
    """Scratch databases, the stores' namespaces, the shared configuration."""
    async with scratch_databases(plan) as (gateway, shards):
        url = gateway.settings.postgres.url.get_secret_value()
        tag = urlsplit(url).path.rsplit("_", 1)[-1]
        port = free_port()
        config = config_for(url, tag, plan, port, directory, shards)
        chaos = Chaos(plan, gateway, tag, config, directory)
        try:
            yield chaos, f"http://127.0.0.1:{port}"
        finally:
            for kind in plan.stores:
                sink = make_sink(kind, tag)
                try:
                    await drop_namespace(sink)
                except Exception as error:  # cleaning up must not hide the run's own outcome
                    log.warning("could not drop the %s namespace %s: %r", kind, tag, error)
                finally:
                    await sink.close()


async def run_chaos(plan: ChaosPlan, directory: Path) -> dict[str, Any]:
    """One chaos run of ``plan``, its process logs under ``directory``; over a cluster, with
    the cluster held (no other run or test changes it meanwhile) in the plan's mode."""
    if not plan.cluster:
        return await _run_chaos(plan, directory)
    cluster = HaCluster.from_environment()
    async with cluster.exclusive():
        await cluster.restore(plan.cluster_mode)
        try:
            return await _run_chaos(plan, directory)
        finally:
            await cluster.restore("sync")


async def _run_chaos(plan: ChaosPlan, directory: Path) -> dict[str, Any]:
    async with chaos_world(plan, directory) as (chaos, url):
        requests = await seed(chaos.gateway, customers=50, products=40)
        return await chaos.run(url, requests)


def verdict(report: dict[str, Any]) -> list[str]:
    """What the run broke: empty when the promise held."""
    broken = []
    if not report["drained"]:
        broken.append("the relays did not drain")
    for kind, drift in report["stores"].items():
        if not drift["clean"]:
            broken.append(f"{kind}: {drift}")
    orders = report["orders"]
    if report.get("processes_exited"):
        broken.append(f"processes exited on their own: {report['processes_exited']}")
    broken += dead_letter_findings(report.get("dead_letters", {}))
    if "saga" in report:
        broken += saga_findings(report["saga"])
    if "moves" in report:
        broken += move_findings(report["moves"])
    if orders.get("acknowledged_missing"):
        broken.append(
            f"{orders['acknowledged_missing']} acknowledged orders missing from PostgreSQL"
        )
    if orders["in_postgres"] != orders["placed"]:
        broken.append(f"{orders['in_postgres']} orders in PostgreSQL, {orders['placed']} placed")
    if orders["transitions_in_postgres"] != orders["transitions"]:
        broken.append(
            f"{orders['transitions_in_postgres']} transitions in PostgreSQL, "
            f"{orders['transitions']} made"
        )
    if report["requests"]["unexplained_failures"]:
        broken.append(f"unexplained failures: {report['requests']['unexplained_failures'][:5]}")
    if report["requests"]["operations_given_up"]:
        broken.append(f"operations given up: {report['requests']['operations_given_up']}")
    return broken


def summarize_dead_letters(letters: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per sink: how many dead letters, how many of each reason, and the first few distinct
    errors."""
    summary: dict[str, dict[str, Any]] = {}
    for letter in letters:
        sink = summary.setdefault(letter["sink"], {"count": 0, "reasons": Counter(), "errors": []})
        sink["count"] += 1
        sink["reasons"][letter["reason"]] += 1
        if letter["last_error"] not in sink["errors"] and len(sink["errors"]) < ERRORS_SHOWN:
            sink["errors"].append(letter["last_error"])
    for sink in summary.values():
        sink["reasons"] = dict(sink["reasons"])
    return summary


def dead_letter_findings(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What the dead letters break: every event of a chaos run is valid, so each is an event a
    store never got; one line per sink with its count, reasons and errors."""
    return [
        f"{sink}: {letters['count']} dead letters ("
        + ", ".join(f"{reason}: {count}" for reason, count in letters["reasons"].items())
        + "); last errors: "
        + " | ".join(letters["errors"])
        for sink, letters in summary.items()
        if letters["count"]
    ]
