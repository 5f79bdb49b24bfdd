"""The chaos run: orders through the HTTP API while relays, stores, PostgreSQL and the API
itself are killed and restarted, then every order checked in every store.

On the servers of ``scripts/services.sh``: a fresh database, ``fanout serve`` and two
``fanout relay`` processes with every store enabled. Orders are placed at a steady rate (some
moved through transitions) by a client that does what a careful client does: a request that
fails with a 503 or a lost connection is sent again, an order with the same idempotency key,
a transition with the same expected version. Meanwhile a fault schedule runs: SIGKILL a relay
and restart it; stop each store's server for a while; restart PostgreSQL (fast shutdown);
SIGKILL the API and restart it. At the end the run waits for the relays to drain and checks
every order of PostgreSQL in every store: nothing lost, stale or different.

    .venv/bin/python -m bench.chaos                   # 100,000 orders, each fault 3 times
    .venv/bin/python -m bench.chaos --orders 3000 --rate 40 --repeats 1   # a short run

The report goes to ``bench/results/chaos.json`` and its chart to ``bench/results/chaos.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import yaml

from adapters.readback import ReadBack
from bench.common import RESULTS, scratch_gateway, write_results
from gateway import Gateway, outbox
from gateway.database import connect
from gateway.loadtest.faults import SERVICES_SCRIPT
from gateway.verify import verify
from tests.acceptance.stores import STORES, drop_namespace, make_sink, store_settings

FaultKind = Literal["kill-relay", "stop-store", "restart-postgres", "kill-api"]
HAPPY_PATH = ("confirmed", "processing", "shipped")
# A failed attempt this long after a fault ended still counts as caused by it: pools
# reconnect and a restarted process warms up.
FAULT_GRACE_SECONDS = 10.0
# How long a client keeps retrying one request before it gives up.
RETRY_FOR_SECONDS = 180.0


@dataclass(frozen=True)
class Fault:
    """One fault of the schedule: what, ``at`` seconds into the load, for how long."""

    kind: FaultKind
    at: float
    target: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ChaosPlan:
    """What the run does."""

    orders: int
    rate: float
    stores: tuple[str, ...] = STORES
    relays: int = 2
    transition_share: float = 0.5
    in_flight: int = 64
    store_outage_seconds: float = 20.0
    drain_timeout_seconds: float = 900.0
    faults: tuple[Fault, ...] = ()

    @property
    def load_seconds(self) -> float:
        """How long placing the orders takes at the plan's rate."""
        return self.orders / self.rate


def fault_schedule(plan: ChaosPlan, repeats: int) -> tuple[Fault, ...]:
    """Each fault ``repeats`` times, spread evenly over the load (from 5 % to 80 % of it),
    the kinds interleaved so that no two of a kind follow each other."""
    kinds: list[tuple[FaultKind, str, float]] = [("kill-relay", "0", 3.0)]
    kinds += [("stop-store", store, plan.store_outage_seconds) for store in plan.stores]
    kinds += [("restart-postgres", "", 0.0), ("kill-api", "", 2.0)]
    if plan.relays > 1:
        kinds.insert(len(plan.stores) // 2 + 1, ("kill-relay", "1", 3.0))
    rounds = [kind for _ in range(repeats) for kind in kinds]
    start, end = 0.05 * plan.load_seconds, 0.80 * plan.load_seconds
    step = (end - start) / max(1, len(rounds) - 1)
    return tuple(
        Fault(kind, round(start + index * step, 1), target, seconds)
        for index, (kind, target, seconds) in enumerate(rounds)
    )


@dataclass
class FaultWindow:
    """When a fault began and ended, in seconds since the load began."""

    kind: FaultKind
    target: str
    began: float
    ended: float | None = None


@dataclass
class ClientCounts:
    """What the client saw."""

    attempts: int = 0
    failed_attempts: Counter[str] = field(default_factory=Counter)
    unexplained_failures: list[dict[str, Any]] = field(default_factory=list)
    placements_replayed: int = 0
    transitions_found_applied: int = 0
    operations_given_up: Counter[str] = field(default_factory=Counter)
    placed: int = 0
    transitions: int = 0


class FanoutProcess:
    """A ``fanout`` subprocess (``serve`` or ``relay``) that can be killed and started again."""

    def __init__(self, name: str, config: Path, args: list[str], logs: Path) -> None:
        self.name = name
        self.config = config
        self.args = args
        self.log_path = logs / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the process, its output appended to its log file."""
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "--config",
                str(self.config),
                *self.args,
                stdout=log,
                stderr=log,
                env={k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")},
            )
        finally:
            log.close()

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within a minute."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            await self.kill()


async def services(action: str, service: str) -> None:
    """``scripts/services.sh ACTION SERVICE``; raises if it fails."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(SERVICES_SCRIPT),
        action,
        service,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"services.sh {action} {service} failed: {stderr.decode()[-500:]}")


class ChaosClient:
    """Places and moves orders through the API as a careful client does: a request that
    fails with a 503 or a lost connection is sent again after a pause, unchanged."""

    def __init__(self, url: str, counts: ClientCounts, origin: float) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0))
        self.counts = counts
        self.origin = origin
        self.failures: list[tuple[float, str]] = []

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def place(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Place an order; its idempotency key makes every retry safe."""
        key = f"chaos-{uuid.uuid4()}"
        response = await self._send("POST", "/orders", request, {"Idempotency-Key": key})
        if response is None or response.status_code not in (200, 201):
            self._give_up("place", response)
            return None
        if response.headers.get("Idempotent-Replayed") == "true":
            self.counts.placements_replayed += 1
        self.counts.placed += 1
        order: dict[str, Any] = response.json()
        return order

    async def transition(self, order: dict[str, Any], status: str) -> dict[str, Any] | None:
        """Move ``order`` on, guarded by its version; a retry of a move that was applied
        gets a version conflict, and reading the order shows it applied."""
        path = f"/orders/{order['id']}"
        body = {"status": status, "expected_version": order["version"]}
        response = await self._send("POST", f"{path}/transitions", body, {})
        if response is not None and response.status_code == 409:
            current = await self._send("GET", path, None, {})
            if current is not None and current.status_code == 200:
                moved: dict[str, Any] = current.json()
                if moved["status"] == status and moved["version"] == order["version"] + 1:
                    self.counts.transitions_found_applied += 1
                    self.counts.transitions += 1
                    return moved
        if response is None or response.status_code != 200:
            self._give_up("transition", response)
            return None
        self.counts.transitions += 1
        result: dict[str, Any] = response.json()
        return result

    def _give_up(self, operation: str, response: httpx.Response | None) -> None:
        status = "no answer" if response is None else f"HTTP {response.status_code}"
        self.counts.operations_given_up[f"{operation}: {status}"] += 1

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response | None:
        deadline = time.perf_counter() + RETRY_FOR_SECONDS
        for attempt in itertools.count():
            self.counts.attempts += 1
            try:
                response = await self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as error:
                self._failed(type(error).__name__)
                pause = min(2.0, 0.1 * 2**attempt)
            else:
                if response.status_code != 503:
                    if response.status_code >= 500:
                        self._failed(f"HTTP {response.status_code}")
                    return response
                retry_after = response.headers.get("Retry-After")
                self._failed("HTTP 503" + ("" if retry_after else " without Retry-After"))
                pause = float(retry_after or 1)
            if time.perf_counter() + pause > deadline:
                return None
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
        return None

    def _failed(self, kind: str) -> None:
        self.failures.append((time.perf_counter() - self.origin, kind))
        self.counts.failed_attempts[kind] += 1


def explained(kind: str, at: float, windows: list[FaultWindow]) -> bool:
    """Whether a failed attempt of ``kind`` at ``at`` is what a fault running then causes:
    a 503 with Retry-After while PostgreSQL restarts, a lost or refused connection while the
    API is down (or restarts after PostgreSQL did). Nothing else may fail."""
    for window in windows:
        ended = window.ended if window.ended is not None else float("inf")
        if not window.began <= at <= ended + FAULT_GRACE_SECONDS:
            continue
        if window.kind == "restart-postgres" and (kind == "HTTP 503" or kind.endswith("Error")):
            return True
        if window.kind == "kill-api" and kind.endswith("Error"):
            return True
    return False


def config_for(url: str, tag: str, plan: ChaosPlan, port: int, directory: Path) -> Path:
    """The configuration the API and the relays share."""
    path = directory / "gateway.yaml"
    config = {
        "postgres": {"url": url, "pool_max_size": 20},
        "api": {"port": port},
        "relay": {
            "batch_size": 500,
            "poll_interval_seconds": 0.2,
            "lease_ttl_seconds": 6,
            "backoff_max_seconds": 2,
            "max_attempts": 12,
            "stats_interval_seconds": 2,
        },
        "sinks": {kind: store_settings(kind, tag) for kind in plan.stores},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def seed(gateway: Gateway, customers: int, products: int) -> list[dict[str, Any]]:
    """Order requests over freshly made customers and well-stocked products."""
    people = []
    for number in range(customers):
        address = {"street_address": f"{number} Chaos St", "city": "Faultline", "postal_code": "1"}
        person = await gateway.create_customer(
            {
                "email": f"chaos-{number}-{uuid.uuid4().hex[:6]}@example.com",
                "first_name": "Chaos",
                "last_name": f"Customer {number}",
                "addresses": [
                    {**address, "address_type": "billing", "is_default": True},
                    {**address, "address_type": "shipping", "is_default": True},
                ],
            }
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

    def __init__(self, plan: ChaosPlan, gateway: Gateway, config: Path, logs: Path) -> None:
        self.plan = plan
        self.gateway = gateway
        self.postgres = gateway.settings.postgres
        self.api = FanoutProcess("api", config, ["serve"], logs)
        self.relays = [
            FanoutProcess(f"relay-{n}", config, ["relay"], logs) for n in range(plan.relays)
        ]
        self.windows: list[FaultWindow] = []
        self.timeline: list[dict[str, Any]] = []
        self.counts = ClientCounts()
        self.origin = 0.0

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

    async def inject(self, fault: Fault, url: str) -> None:
        """Run one fault at its time."""
        await asyncio.sleep(max(0.0, fault.at - (time.perf_counter() - self.origin)))
        window = FaultWindow(fault.kind, fault.target, self.now())
        self.windows.append(window)
        match fault.kind:
            case "kill-relay":
                relay = self.relays[int(fault.target)]
                await relay.kill()
                await asyncio.sleep(fault.seconds)
                await relay.start()
            case "kill-api":
                await self.api.kill()
                await asyncio.sleep(fault.seconds)
                await self.api.start()
                await self.wait_for_api(url)
            case "stop-store":
                await services("down", fault.target)
                await asyncio.sleep(fault.seconds)
                await services("up", fault.target)
            case "restart-postgres":
                await services("down", "postgres")
                await services("up", "postgres")
        window.ended = self.now()

    async def sample(self) -> None:
        """Once a second: each sink's backlog and the age of its oldest undelivered event."""
        connection: asyncpg.Connection | None = None
        while True:
            await asyncio.sleep(1.0)
            row: dict[str, Any] = {
                "t": self.now(),
                "placed": self.counts.placed,
                "failed_attempts": sum(self.counts.failed_attempts.values()),
                "backlog": {},
                "oldest_undelivered_seconds": {},
            }
            try:
                if connection is None or connection.is_closed():
                    connection = await asyncio.wait_for(connect(self.postgres), 2)
                for backlog in await asyncio.wait_for(outbox.backlog(connection), 5):
                    row["backlog"][backlog.sink] = backlog.events
                    row["oldest_undelivered_seconds"][backlog.sink] = backlog.oldest_age_seconds
            except Exception:  # PostgreSQL is restarting: this second has no reading
                connection = None
            self.timeline.append(row)

    async def drive(self, client: ChaosClient, requests: list[dict[str, Any]]) -> None:
        """Place the plan's orders at its rate; move some of them along."""
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

        for number in range(self.plan.orders):
            due = number / self.plan.rate - (time.perf_counter() - self.origin)
            await asyncio.sleep(max(0.0, due))
            await slots.acquire()
            task = asyncio.create_task(lifecycle(requests[number % len(requests)]))
            lifecycles.add(task)
            task.add_done_callback(lifecycles.discard)
        await asyncio.gather(*lifecycles)

    async def drain(self) -> bool:
        """Until no sink has a backlog (or the plan's drain timeout passes)."""
        deadline = time.perf_counter() + self.plan.drain_timeout_seconds
        while time.perf_counter() < deadline:
            async with self.gateway.pool.acquire() as connection:
                backlogs = {b.sink: b.events for b in await outbox.backlog(connection)}
            if all(backlogs.get(store, 1) == 0 for store in self.plan.stores):
                return True
            await asyncio.sleep(1.0)
        return False

    async def run(self, url: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """Start the processes, drive the load through the faults, drain, and report."""
        await self.api.start()
        await self.wait_for_api(url)
        for relay in self.relays:
            await relay.start()
        client = ChaosClient(url, self.counts, 0.0)
        self.origin = client.origin = time.perf_counter()
        sampler = asyncio.create_task(self.sample())
        faults = [asyncio.create_task(self.inject(fault, url)) for fault in self.plan.faults]
        try:
            await self.drive(client, requests)
            load_seconds = self.now()
            await asyncio.gather(*faults)
            # Pooled connections died with the PostgreSQL restarts.
            await self.gateway.pool.expire_connections()
            drained = await self.drain()
            drain_seconds = self.now() - load_seconds
        finally:
            for task in faults:
                task.cancel()
            sampler.cancel()
            await client.close()
            await self.api.stop()
            for relay in self.relays:
                await relay.stop()
        return await self.report(client, load_seconds, drained, drain_seconds)

    async def report(
        self, client: ChaosClient, load_seconds: float, drained: bool, drain_seconds: float
    ) -> dict[str, Any]:
        """Every order of PostgreSQL checked in every store, and what the client saw."""
        stores: dict[str, Any] = {}
        tag = self.gateway.settings.postgres.url.get_secret_value().rsplit("_", 1)[-1]
        for kind in self.plan.stores:
            sink = make_sink(kind, tag)
            try:
                assert isinstance(sink, ReadBack)
                stores[kind] = (await verify(self.gateway.pool, kind, sink)).as_dict()
            finally:
                await sink.close()
        in_postgres = await self.gateway.pool.fetchval("SELECT count(*) FROM orders")
        moved = await self.gateway.pool.fetchval("SELECT sum(version - 1) FROM orders")
        unexplained = [
            {"t": round(at, 2), "kind": kind}
            for at, kind in client.failures
            if not explained(kind, at, self.windows)
        ]
        counts = self.counts
        return {
            "plan": {**asdict(self.plan), "faults": len(self.plan.faults)},
            "load_seconds": load_seconds,
            "achieved_order_rate": round(counts.placed / load_seconds, 1),
            "drained": drained,
            "drain_seconds": round(drain_seconds, 1),
            "orders": {
                "placed": counts.placed,
                "in_postgres": in_postgres,
                "transitions": counts.transitions,
                "transitions_in_postgres": moved or 0,
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
            },
            "stores": stores,
            "faults": [asdict(window) for window in self.windows],
            "timeline": self.timeline,
        }


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def chaos_world(plan: ChaosPlan, directory: Path) -> AsyncIterator[tuple[Chaos, str]]:
    """A scratch database, the stores' namespaces, the shared configuration."""
    async with scratch_gateway(pool_size=4) as gateway:
        url = gateway.settings.postgres.url.get_secret_value()
        tag = url.rsplit("_", 1)[-1]
        port = free_port()
        config = config_for(url, tag, plan, port, directory)
        chaos = Chaos(plan, gateway, config, directory)
        try:
            yield chaos, f"http://127.0.0.1:{port}"
        finally:
            for kind in plan.stores:
                sink = make_sink(kind, tag)
                try:
                    with contextlib.suppress(Exception):
                        await drop_namespace(sink)
                finally:
                    await sink.close()


async def run_chaos(plan: ChaosPlan, directory: Path) -> dict[str, Any]:
    """One chaos run of ``plan``, its process logs under ``directory``."""
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


def draw(report: dict[str, Any], path: Path) -> None:
    """Age of the oldest undelivered event and backlog per store over time, faults shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    seconds = [row["t"] for row in rows]
    figure, (lag, backlog, placed) = plt.subplots(
        3, 1, figsize=(12, 11), sharex=True, constrained_layout=True
    )
    for kind in report["stores"]:
        lag.plot(seconds, [r["oldest_undelivered_seconds"].get(kind) for r in rows], label=kind)
        backlog.plot(seconds, [r["backlog"].get(kind) for r in rows], label=kind)
    placed.plot(seconds, [r["placed"] for r in rows], label="orders placed")
    placed.plot(seconds, [r["failed_attempts"] for r in rows], label="failed attempts (retried)")
    colours = {
        "kill-relay": "tab:purple",
        "stop-store": "tab:orange",
        "restart-postgres": "tab:red",
        "kill-api": "tab:green",
    }
    for window in report["faults"]:
        end = window["ended"] if window["ended"] is not None else window["began"]
        for axis in (lag, backlog, placed):
            axis.axvspan(window["began"], max(end, window["began"] + 0.5), alpha=0.15,
                         color=colours[window["kind"]])  # fmt: skip
        label = window["kind"] + (f" {window['target']}" if window["target"] else "")
        lag.annotate(label, (window["began"], 0), rotation=90, fontsize=6, va="bottom")
    lag.set_ylabel("oldest undelivered event (s)")
    backlog.set_ylabel("backlog (events)")
    placed.set_ylabel("count")
    placed.set_xlabel("seconds")
    for axis in (lag, backlog, placed):
        axis.legend(loc="upper left", fontsize=8)
        axis.grid(alpha=0.3)
    plan = report["plan"]
    figure.suptitle(
        f"chaos run: {report['orders']['placed']:,} orders at {plan['rate']:g}/s, "
        f"{plan['faults']} faults (shaded: relay killed, store stopped, PostgreSQL restarted, "
        "API killed)"
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    """Run the chaos benchmark and record its report and chart."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=80.0, help="orders per second")
    parser.add_argument("--repeats", type=int, default=3, help="times each fault runs")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds a store is down")
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--name", default="chaos", help="results file name")
    arguments = parser.parse_args()
    plan = ChaosPlan(
        orders=arguments.orders,
        rate=arguments.rate,
        stores=tuple(arguments.stores.split(",")),
        store_outage_seconds=arguments.outage,
    )
    plan = replace(plan, faults=fault_schedule(plan, arguments.repeats))
    logs = Path(tempfile.mkdtemp(prefix="fanout-chaos-"))
    print(f"process logs in {logs}")
    report = asyncio.run(run_chaos(plan, logs))
    broken = verdict(report)
    report["verdict"] = broken or "0 lost, 0 stale, 0 mismatched in every store"
    path = write_results(arguments.name, report)
    draw(report, RESULTS / f"{arguments.name}.png")
    print(
        f"{report['orders']} in {report['load_seconds']} s, drained in {report['drain_seconds']} s"
    )
    print(f"stores: {report['stores']}")
    print(f"requests: {report['requests']}; duplicates: {report['duplicates_absorbed']}")
    print(f"verdict: {report['verdict']}; written to {path}")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
