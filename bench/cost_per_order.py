"""Cost per order, end to end: the CPU each part of the system spends per order placed through
the HTTP API and fanned out to every store.

One run over a scratch database: ``fanout serve`` and one ``fanout relay`` with every store as
a sink (MongoDB through FerretDB, Redis, Elasticsearch, InfluxDB, Kafka), and ``fanout
loadtest`` offering orders through the API at a fixed rate (open loop), after a short warm-up
run. The measured window runs from the load's start until the relay has delivered every order
to every sink; ``fanout verify`` then checks each store against PostgreSQL.

CPU time (user + system) is read from ``/proc/<pid>/stat`` for each role: the processes this
run starts with their children (the load test's driver processes among them), and the store
servers ``scripts/services.sh`` runs, found through its pid files. A process's ended children
count through its ``cutime``/``cstime``. PostgreSQL's processes are told apart by their titles:
the backends of the scratch database and the server's own processes (WAL writer,
checkpointer, ...) count as PostgreSQL, those of FerretDB's database as MongoDB's storage, and
those of other databases not at all.

    .venv/bin/python -m bench.cost_per_order [--rate 150] [--seconds 30] [--warm-up 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import matplotlib
import yaml

matplotlib.use("Agg")  # files only: no display on servers and CI machines

import matplotlib.pyplot as plt

from bench.common import RESULTS, scratch_gateway, write_results
from gateway import Gateway
from gateway.postgres.outbox import backlog
from gateway.relay import tables
from support.api_process import Process, api_server, clean_environment, spawn, write_config
from support.servers import ROOT, server_url
from support.stores import drop_namespace, make_sink, store_settings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SINKS = ("mongodb", "redis", "elasticsearch", "influxdb", "kafka")
SAMPLE_EVERY = 1_000
"""The load test polls the stores for every Nth write to time its visibility; those reads are
the load test's work, not an order's, so they are kept rare."""
FERRETDB_DATABASE = "ferretdb"
"""The PostgreSQL database FerretDB keeps its data in (``scripts/services.sh``)."""
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# --- reading /proc ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """What ``/proc/<pid>/stat`` says of a process: its parent, its start (in clock ticks
    since boot, which with the pid names the process), and its CPU ticks, its own and its
    ended children's (those it has waited for)."""

    parent: int
    started: int
    own_ticks: int
    reaped_ticks: int


def parse_stat(text: str) -> ProcStat:
    """The fields of a ``/proc/<pid>/stat`` line (its command, in parentheses, may hold spaces
    and parentheses itself)."""
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)); utime, stime, cutime, cstime are 14-17.
    return ProcStat(
        parent=int(fields[1]),
        started=int(fields[19]),
        own_ticks=int(fields[11]) + int(fields[12]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
    )


Snapshot = dict[int, ProcStat]


def snapshot() -> Snapshot:
    """Every process of the machine, as ``/proc`` shows it now."""
    found: Snapshot = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as file:
                    found[int(entry.name)] = parse_stat(file.read())
            except OSError:  # ended meanwhile
                continue
    return found


def command_line(pid: int) -> str:
    """The command line of ``pid`` (a PostgreSQL process's title), or '' once it has ended."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children_of(processes: Snapshot) -> dict[int, list[int]]:
    """Each process's living children."""
    children: dict[int, list[int]] = {}
    for pid, stat in processes.items():
        children.setdefault(stat.parent, []).append(pid)
    return children


def tree_ticks(processes: Snapshot, root: int, children: Mapping[int, list[int]]) -> int:
    """CPU ticks of ``root`` and all its descendants, living or ended and waited for."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stat = processes[pid]
        total += stat.own_ticks + stat.reaped_ticks
        stack.extend(children.get(pid, ()))
    return total


# --- the store servers' processes -------------------------------------------------------


def services_dir() -> Path:
    """Where ``scripts/services.sh`` keeps its servers' data and pid files."""
    return Path(os.environ.get("FANOUT_SERVICES_DIR", ROOT / ".services"))


def first_pid(pid_file: Path) -> int:
    """The pid on the first line of ``pid_file``."""
    try:
        return int(pid_file.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError) as error:
        raise ServerNotFound(f"{pid_file}: no pid ({error})") from error


def postgres_pid(services: Path) -> int:
    """PostgreSQL's postmaster, from the cluster's ``postmaster.pid``."""
    return first_pid(services / "postgres" / "data" / "postmaster.pid")


def mongodb_pid(services: Path) -> int:
    """FerretDB, the server speaking MongoDB's protocol here."""
    return first_pid(services / "mongodb" / "ferretdb.pid")


def redis_pid(services: Path) -> int:
    """``redis-server``, from the pid file it writes itself."""
    return first_pid(services / "redis" / "redis.pid")


def elasticsearch_pid(services: Path) -> int:
    """Elasticsearch's server JVM, from the pid file its ``-p`` option writes."""
    return first_pid(services / "elasticsearch" / "es.pid")


def influxdb_pid(services: Path) -> int:
    """``influxd``."""
    return first_pid(services / "influxdb" / "influxd.pid")


def kafka_pid(services: Path) -> int:
    """The Kafka broker's JVM (broker and controller in one)."""
    return first_pid(services / "kafka" / "kafka.pid")


SERVER_PIDS: dict[str, tuple[Callable[[Path], int], str]] = {
    "postgres": (postgres_pid, "postgres"),
    "mongodb": (mongodb_pid, "ferretdb"),
    "redis": (redis_pid, "redis-server"),
    "elasticsearch": (elasticsearch_pid, "elasticsearch"),
    "influxdb": (influxdb_pid, "influxd"),
    "kafka": (kafka_pid, "kafka"),
}
"""Per server, how its pid is found and a word its command line holds."""


class ServerNotFound(Exception):
    """A store server's process cannot be found or is not the server."""


def server_pid(kind: str, services: Path, command: Callable[[int], str] = command_line) -> int:
    """The running server of ``kind``; ``ServerNotFound`` naming it when its pid file is
    missing or names a process that is not that server."""
    find, marker = SERVER_PIDS[kind]
    pid = find(services)
    seen = command(pid)
    if marker not in seen:
        raise ServerNotFound(
            f"{kind}: pid {pid} from {services} is "
            + (f"{seen.split(' ', 1)[0]!r}, not {marker}" if seen else "not running")
            + f" (start it with `bash scripts/services.sh up {kind}`)"
        )
    return pid


# --- roles ----------------------------------------------------------------------------------

POSTGRES_SERVER_PROCESSES = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "walsender",
    "walreceiver",
    "archiver",
    "startup",
    "stats collector",
    "parallel worker",
)
ADDRESS = re.compile(r"^(\[local\]|[0-9A-Fa-f.:]+\(\d+\)|[\w.-]+\(\d+\))$")


def postgres_database(title: str) -> str | None:
    """The database a PostgreSQL process works in, from its title (``postgres: USER DATABASE
    HOST(PORT) ACTIVITY`` for a backend, ``postgres: autovacuum worker DATABASE`` for a
    vacuum), or ``None`` for the server's own processes."""
    words = title.removeprefix("postgres:").split()
    if words and words[0].endswith(":"):  # the cluster_name setting's prefix
        words = words[1:]
    if len(words) >= 3 and words[:2] == ["autovacuum", "worker"]:
        return words[2]
    if not words or any(" ".join(words).startswith(name) for name in POSTGRES_SERVER_PROCESSES):
        return None
    if len(words) >= 3 and ADDRESS.match(words[2]):
        return words[1]
    return None


POSTGRES = "PostgreSQL"
FERRETDB_STORAGE = "MongoDB: FerretDB's PostgreSQL backends"
OTHER_DATABASES = "other databases"


def postgres_role(title: str, orders_database: str) -> str:
    """Whose cost a PostgreSQL process's CPU is: the orders database's and the server's own
    processes are PostgreSQL's, FerretDB's database's is MongoDB's storage, any other
    database's is none of this run's."""
    database = postgres_database(title)
    if database is None or database == orders_database:
        return POSTGRES
    if database == FERRETDB_DATABASE:
        return FERRETDB_STORAGE
    return OTHER_DATABASES


ROLE_ORDER = (
    POSTGRES,
    "API server",
    "relay",
    "MongoDB (FerretDB)",
    FERRETDB_STORAGE,
    "Redis",
    "Elasticsearch",
    "InfluxDB",
    "Kafka",
    "load generator",
)
STORE_ROLES = {
    "mongodb": "MongoDB (FerretDB)",
    "redis": "Redis",
    "elasticsearch": "Elasticsearch",
    "influxdb": "InfluxDB",
    "kafka": "Kafka",
}


# --- readings and the window's arithmetic --------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One look at the machine: when (monotonic), the CPU ticks of each role's process tree,
    and PostgreSQL's processes one by one (``(pid, started)`` -> title and own ticks)."""

    at: float
    trees: dict[str, int]
    postgres: dict[tuple[int, int], tuple[str, int]]


def take_reading(roots: Mapping[str, int], postmaster: int) -> Reading:
    """The CPU of every role's tree (the roots' pids) and of each PostgreSQL process now."""
    processes = snapshot()
    children = children_of(processes)
    trees: dict[str, int] = {}
    for role, root in roots.items():
        if root not in processes:
            raise ServerNotFound(f"{role} (pid {root}) ended during the run")
        trees[role] = tree_ticks(processes, root, children)
    postgres = {
        (pid, processes[pid].started): (command_line(pid), processes[pid].own_ticks)
        for pid in [postmaster, *children.get(postmaster, ())]
        if pid in processes
    }
    return Reading(time.monotonic(), trees, postgres)


def postgres_ticks_by_role(readings: Sequence[Reading], orders_database: str) -> dict[str, int]:
    """PostgreSQL's CPU ticks from the first reading to the last, by whose cost they are.

    Each process counts from the first reading (or from zero, born since) to the last reading
    that saw it; what a process spent after its last reading before it ended is in no role
    (the run reports it as the cluster's total less these)."""
    first = readings[0].postgres
    last_seen: dict[tuple[int, int], tuple[str, int]] = {}
    for reading in readings:
        last_seen.update(reading.postgres)
    by_role: dict[str, int] = {}
    for key, (title, ticks) in last_seen.items():
        role = postgres_role(title, orders_database)
        spent = ticks - (first[key][1] if key in first else 0)
        by_role[role] = by_role.get(role, 0) + spent
    return by_role


def readings_between(readings: Sequence[Reading], start: float, end: float) -> list[Reading]:
    """The readings of a window: the last one taken at or before ``start`` (so the window
    holds all of it), and every later one up to ``end``."""
    before = [reading for reading in readings if reading.at <= start]
    first = before[-1] if before else readings[0]
    return [r for r in readings if first.at <= r.at <= end]


@dataclass(frozen=True)
class RoleCost:
    """One role's CPU over the window, per order and as a share of the total, and how much of
    it the role spends with no load at all (its idle rate over the same window)."""

    role: str
    cpu_seconds: float
    cpu_ms_per_order: float
    share: float
    idle_ms_per_order: float


def cost_per_order(
    cpu_seconds: Mapping[str, float],
    orders: int,
    idle_cores: Mapping[str, float] | None = None,
    window_seconds: float = 0.0,
) -> list[RoleCost]:
    """Each role's CPU milliseconds per order and share of all roles', in ``ROLE_ORDER``
    (roles it does not know after it), and what it would have spent over the window's
    ``window_seconds`` at its rate without load (``idle_cores``), per order."""
    if orders <= 0:
        raise ValueError("orders: no order was placed, so there is no cost per order")
    idle = {role: cores * window_seconds for role, cores in (idle_cores or {}).items()}
    total = sum(cpu_seconds.values())
    known = [role for role in ROLE_ORDER if role in cpu_seconds]
    roles = known + sorted(set(cpu_seconds) - set(known))
    return [
        RoleCost(
            role,
            round(cpu_seconds[role], 3),
            round(cpu_seconds[role] * 1000 / orders, 3),
            round(cpu_seconds[role] / total, 4) if total > 0 else 0.0,
            round(idle.get(role, 0.0) * 1000 / orders, 3),
        )
        for role in roles
    ]


def window_cpu_seconds(
    readings: Sequence[Reading], tree_roles: Iterable[str], orders_database: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Over the readings of a window: each role's CPU seconds, and what is not in any role
    (other databases' PostgreSQL backends; PostgreSQL processes that ended between readings)."""
    first, last = readings[0], readings[-1]
    seconds = {role: (last.trees[role] - first.trees[role]) / CLOCK_TICKS for role in tree_roles}
    postgres = postgres_ticks_by_role(readings, orders_database)
    cluster = last.trees[POSTGRES] - first.trees[POSTGRES]
    seconds[POSTGRES] = postgres.get(POSTGRES, 0) / CLOCK_TICKS
    seconds[FERRETDB_STORAGE] = postgres.get(FERRETDB_STORAGE, 0) / CLOCK_TICKS
    not_counted = {
        "postgresql_other_databases": postgres.get(OTHER_DATABASES, 0) / CLOCK_TICKS,
        "postgresql_ended_between_readings": (cluster - sum(postgres.values())) / CLOCK_TICKS,
    }
    return seconds, not_counted


def loopback_only(urls: Mapping[str, str]) -> None:
    """Raise ``ValueError`` naming each service whose URL is not on this machine's loopback."""
    remote = [name for name, url in urls.items() if urlsplit(url).hostname not in LOOPBACK]
    if remote:
        raise ValueError(
            "this benchmark sends traffic to 127.0.0.1 only; not on loopback: " + ", ".join(remote)
        )


# --- the run --------------------------------------------------------------------------------


class Sampler:
    """Readings every ``interval`` seconds until stopped."""

    def __init__(self, roots: Mapping[str, int], postmaster: int, interval: float) -> None:
        self.roots = dict(roots)
        self.postmaster = postmaster
        self.interval = interval
        self.readings: list[Reading] = []

    def read(self) -> Reading:
        """Take a reading now and keep it."""
        reading = take_reading(self.roots, self.postmaster)
        self.readings.append(reading)
        return reading

    async def run(self) -> None:
        """Read until cancelled."""
        while True:
            self.read()
            await asyncio.sleep(self.interval)


async def wait_for(
    what: str, condition: Callable[[], Awaitable[bool]], within: float, every: float = 0.1
) -> None:
    """Wait until the awaitable ``condition()`` is true; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {within:g} s")
        await asyncio.sleep(every)


async def stop_sampling(sampling: asyncio.Task[None]) -> None:
    """Cancel a sampler's task and wait until it has stopped."""
    sampling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampling


async def idle_cores(
    roots: Mapping[str, int], postmaster: int, seconds: float, interval: float, database: str
) -> dict[str, float]:
    """Cores each role uses over ``seconds`` with everything running and no load."""
    sampler = Sampler(roots, postmaster, interval)
    sampling = asyncio.create_task(sampler.run())
    try:
        # Readings for ``seconds``, unless a server ends meanwhile (which ends the sampler).
        done, _ = await asyncio.wait({sampling}, timeout=seconds)
        if done:
            sampling.result()
    finally:
        await stop_sampling(sampling)
    sampler.read()
    tree_roles = [role for role in roots if role != POSTGRES]
    spent, _ = window_cpu_seconds(sampler.readings, tree_roles, database)
    elapsed = sampler.readings[-1].at - sampler.readings[0].at
    return {role: used / elapsed for role, used in spent.items()}


async def relay_serves(gateway: Gateway, relay: Process) -> bool:
    """Whether the relay holds a lease on every sink (it has started them all)."""
    if relay.process.returncode is not None:
        raise RuntimeError(f"fanout relay exited:\n{relay.log_text[-2000:]}")
    totals = {t.sink: t.relays for t in await tables.sink_totals(gateway.pool)}
    return all(totals.get(sink, 0) >= 1 for sink in SINKS)


async def delivered_everything(gateway: Gateway) -> bool:
    """Whether every sink's backlog is empty."""
    async with gateway.pool.acquire() as connection:
        backlogs = {b.sink: b.events for b in await backlog(connection)}
    return all(backlogs.get(sink, 0) == 0 for sink in SINKS)


async def checking_time(stdout: asyncio.StreamReader) -> float | None:
    """When the load test says it checks the stores (its load has run and drained), or
    ``None`` if it ends without saying so."""
    async for line in stdout:
        if line.startswith(b"[checking]"):
            return time.monotonic()
    return None


async def start_loadtest(
    config: Path, api_url: str, rate: float, seconds: float, out: Path, drain_timeout: float
) -> asyncio.subprocess.Process:
    """``fanout loadtest`` offering placements only, at ``rate``, through the API."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--config", str(config), "loadtest",
        "--via", "http", "--url", api_url, "--rate", f"{rate:g}", "--duration", f"{seconds:g}",
        "--transitions", "0", "--relays", "0", "--sample-every", str(SAMPLE_EVERY),
        "--drain-timeout", f"{drain_timeout:g}", "--out", str(out),
        env=clean_environment(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stopped(process: asyncio.subprocess.Process, within: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``within`` seconds."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), within)
        except TimeoutError:
            process.kill()
            await process.wait()


async def warm_up(config: Path, api_url: str, rate: float, seconds: float) -> None:
    """A short load test, not measured: pools, plans, JITs, topics and indexes are made."""
    with tempfile.TemporaryDirectory() as directory:
        process = await start_loadtest(config, api_url, rate, seconds, Path(directory) / "w.json",
                                       drain_timeout=120)  # fmt: skip
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), seconds + 300)
        finally:
            await stopped(process)
        if process.returncode != 0:
            raise RuntimeError(f"the warm-up load test failed:\n{stderr.decode()[-2000:]}")


@dataclass(frozen=True)
class Measured:
    """The measured load test's report and the window's readings."""

    report: dict[str, Any]
    readings: list[Reading]
    waited_after_drain_seconds: float


async def measured_load(
    gateway: Gateway,
    config: Path,
    api_url: str,
    roots: Mapping[str, int],
    postmaster: int,
    args: argparse.Namespace,
) -> Measured:
    """The load test, its CPU read all along; the window ends once every sink (Kafka too,
    which the load test's drain does not wait for) has every event."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "run.json"
        process = await start_loadtest(
            config, api_url, args.rate, args.seconds, out, args.drain_timeout
        )
        sampler = Sampler({**roots, "load generator": process.pid}, postmaster, args.interval)
        sampling = asyncio.create_task(sampler.run())
        try:
            assert process.stdout is not None and process.stderr is not None
            errors = asyncio.create_task(process.stderr.read())
            watching = asyncio.create_task(checking_time(process.stdout))
            # A server that ends meanwhile ends the sampler, and the run with it.
            await asyncio.wait({watching, sampling}, return_when=asyncio.FIRST_COMPLETED)
            if sampling.done():
                watching.cancel()
                sampling.result()
            checking_at = await watching
            if checking_at is None:
                await process.wait()
                raise RuntimeError(f"the load test ended early:\n{(await errors).decode()[-2000:]}")
            await wait_for("every sink delivered", lambda: delivered_everything(gateway), 120)
            end = sampler.read()
            await stop_sampling(sampling)
            await asyncio.wait_for(process.wait(), 600)
            if not out.exists():
                raise RuntimeError(f"the load test wrote no report:\n{(await errors).decode()}")
            report: dict[str, Any] = json.loads(out.read_text())
        finally:
            await stop_sampling(sampling)
            await stopped(process)
    phase = report["phases"][0]
    load_start = checking_at - phase["drain_seconds"] - phase["seconds"]
    window = readings_between(sampler.readings, load_start, end.at)
    return Measured(report, window, end.at - checking_at)


async def verify(config: Path) -> dict[str, Any]:
    """``fanout verify --json`` of every sink; its report (``RuntimeError`` on a difference)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--config", str(config), "verify", "--json",
        env=clean_environment(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 600)
    finally:
        await stopped(process)
    if process.returncode != 0:
        raise RuntimeError(f"fanout verify found differences:\n{stdout.decode()}{stderr.decode()}")
    result: dict[str, Any] = json.loads(stdout)
    return result


async def drop_store_namespaces(tag: str) -> None:
    """Remove what the run wrote to each store."""
    for kind in SINKS:
        sink = make_sink(kind, tag)
        try:
            await sink.start()
            await drop_namespace(sink)
        except Exception as error:  # one store's cleanup does not stop the others'
            print(f"could not clean up {kind}: {type(error).__name__}: {error}", file=sys.stderr)
        finally:
            with contextlib.suppress(Exception):
                await sink.close()


async def run(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    urls = {kind: server_url(kind) for kind in ("postgres", *SINKS)}
    loopback_only(urls)
    services = services_dir()
    pids = {kind: server_pid(kind, services) for kind in ("postgres", *SINKS)}
    tag = f"cost{uuid.uuid4().hex[:8]}"
    try:
        async with scratch_gateway(pool_size=2) as gateway:
            url = gateway.settings.postgres.url.get_secret_value()
            database = database_name(url)
            settings["postgres"] = {**settings.get("postgres", {}), "url": url}
            settings["sinks"] = {kind: store_settings(kind, tag) for kind in SINKS}
            settings["logging"] = {"level": "INFO"}  # the API's start is read from its log
            with tempfile.TemporaryDirectory() as directory:
                config = write_config(Path(directory), settings)
                relay = await spawn(config, "relay")
                try:
                    await wait_for(
                        "the relay serving every sink", lambda: relay_serves(gateway, relay), 120
                    )
                    async with api_server(config) as api:
                        roots = {
                            "API server": api.server.process.pid,
                            "relay": relay.process.pid,
                            **{STORE_ROLES[kind]: pids[kind] for kind in SINKS},
                            POSTGRES: pids["postgres"],
                        }
                        await warm_up(config, api.url, args.rate, args.warm_up)
                        await wait_for(
                            "the warm-up delivered", lambda: delivered_everything(gateway), 120
                        )
                        idle = await idle_cores(
                            roots, pids["postgres"], args.idle, args.interval, database
                        )
                        measured = await measured_load(
                            gateway, config, api.url, roots, pids["postgres"], args
                        )
                finally:
                    with contextlib.suppress(TimeoutError):
                        await relay.terminate(within=30)
                    await relay.kill()
                verified = await verify(config)
    finally:
        await drop_store_namespaces(tag)
    return summarise(args, measured, database, idle, verified)


def database_name(url: str) -> str:
    """The database name of a PostgreSQL URL."""
    return urlsplit(url).path.lstrip("/")


def summarise(
    args: argparse.Namespace,
    measured: Measured,
    database: str,
    idle: Mapping[str, float],
    verified: dict[str, Any],
) -> dict[str, Any]:
    """The recorded figures of a run (``RuntimeError`` when its load was not clean)."""
    report = measured.report
    phase = report["phases"][0]
    if report["result"] != "clean" or not phase["drained"] or phase["errors"]:
        raise RuntimeError(
            f"the load test was not clean: result {report['result']}, drained "
            f"{phase['drained']}, errors {phase['errors']}"
        )
    orders = phase["orders"]["placed"]
    tree_roles = [role for role in measured.readings[0].trees if role != POSTGRES]
    seconds, not_counted = window_cpu_seconds(measured.readings, tree_roles, database)
    window = measured.readings[-1].at - measured.readings[0].at
    roles = cost_per_order(seconds, orders, idle, window)
    total = sum(role.cpu_seconds for role in roles)
    latency = phase["latency_ms"]["place"]
    return {
        "offered_rate": args.rate,
        "seconds": args.seconds,
        "warm_up_seconds": args.warm_up,
        "achieved_rate": phase["achieved_rate"],
        "orders": orders,
        "window_seconds": round(window, 2),
        "drain_seconds": phase["drain_seconds"],
        "waited_for_kafka_after_drain_seconds": round(measured.waited_after_drain_seconds, 2),
        "placement_ms": {"p50": latency["p50"], "p99": latency["p99"]},
        "cpu_ms_per_order": round(total * 1000 / orders, 3),
        "idle_ms_per_order": round(sum(role.idle_ms_per_order for role in roles), 3),
        "idle_seconds": args.idle,
        "idle_cores": {role: round(cores, 3) for role, cores in idle.items()},
        "cores_used": round(total / window, 2),
        "roles": [vars(role) for role in roles],
        "not_counted_cpu_seconds": {k: round(v, 3) for k, v in not_counted.items()},
        "verify": verified,
        "cpus": os.cpu_count(),
    }


def draw(results: Mapping[str, Any], path: Path) -> None:
    """A horizontal bar per role: CPU ms per order, the part the role spends idle in grey,
    labelled with its share of the total."""
    roles = list(reversed(results["roles"]))
    names = [role["role"] for role in roles]
    totals = [role["cpu_ms_per_order"] for role in roles]
    idle = [min(role["idle_ms_per_order"], role["cpu_ms_per_order"]) for role in roles]
    figure, axis = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
    axis.barh(names, idle, color="tab:gray", label="spent idle too (its rate without load)")
    axis.barh(names, [t - i for t, i in zip(totals, idle, strict=True)], left=idle,
              color="tab:blue", label="above idle")  # fmt: skip
    for index, role in enumerate(roles):
        axis.annotate(
            f" {role['cpu_ms_per_order']:.2f} ms ({role['share']:.0%})",
            (role["cpu_ms_per_order"], index), va="center", fontsize=8,
        )  # fmt: skip
    axis.set_xlim(0, max(totals) * 1.3 if totals else 1)
    axis.set_xlabel("CPU ms per order (user + system)")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(
        f"cost per order: {results['cpu_ms_per_order']:.2f} CPU ms in all\n"
        f"{results['orders']:,} orders through the API to every store, "
        f"{results['achieved_rate']:g}/s achieved of {results['offered_rate']:g}/s offered",
        fontsize=11,
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_table(results: Mapping[str, Any]) -> None:
    """The table, as the benchmarks page shows it."""
    print("| role | CPU ms per order | share | of it, the role's idle rate |")
    print("|---|---|---|---|")
    for role in results["roles"]:
        print(
            f"| {role['role']} | {role['cpu_ms_per_order']:.2f} | {role['share']:.1%} "
            f"| {role['idle_ms_per_order']:.2f} |"
        )
    print(
        f"| **total** | **{results['cpu_ms_per_order']:.2f}** | 100 % "
        f"| {results['idle_ms_per_order']:.2f} |"
    )
    print(
        f"{results['orders']:,} orders, achieved {results['achieved_rate']:g}/s of "
        f"{results['offered_rate']:g}/s, window {results['window_seconds']:g} s, "
        f"{results['cores_used']:g} cores used"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0, help="orders/s offered")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured load")
    parser.add_argument("--warm-up", type=float, default=5.0, help="seconds of unmeasured load")
    parser.add_argument("--config", default="config/loadtest.yaml",
                        help="the profile whose pool and relay settings are used")  # fmt: skip
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds measured without load, before the load")  # fmt: skip
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between readings")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds the relay has to deliver everything")  # fmt: skip
    args = parser.parse_args()
    settings = yaml.safe_load(Path(args.config).read_text())
    try:
        results = asyncio.run(run(args, settings))
    except KeyboardInterrupt:
        sys.exit("cost_per_order: interrupted; its processes, database and store data removed")
    except (ServerNotFound, RuntimeError, TimeoutError, ValueError) as error:
        sys.exit(f"cost_per_order: {error}")
    print_table(results)
    print(f"results: {write_results('cost_per_order', results)}")
    chart = RESULTS / "cost_per_order.png"
    draw(results, chart)
    print(f"chart: {chart}")


if __name__ == "__main__":
    main()
