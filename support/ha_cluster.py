"""The postgres-ha cluster of ``scripts/services.sh``: three PostgreSQL nodes under Patroni, each
in a network namespace of its own, driven through Patroni's REST API and iproute2/iptables.

Tests and benchmarks use it to move, crash and cut off the primary, and to wait (bounded) until
the cluster has settled again. Killing, partitioning and namespaces need root.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import yaml

from support.eventually import eventually
from support.servers import ROOT, SERVICES_SCRIPT, server_url

Mode = Literal["async", "sync", "strict"]

# Patroni's synchronous_mode and synchronous_mode_strict for each replication mode.
MODE_FLAGS: dict[Mode, tuple[bool, bool]] = {
    "async": (False, False),
    "sync": (True, False),
    "strict": (True, True),
}

# The cluster-wide timings of scripts/patroni/patroni.yml.template.
TTL = 20.0
LOOP_WAIT = 1.0

PARTITION_CHAIN = "fanout-partition"


@dataclass(frozen=True)
class Member:
    """One node as Patroni's ``GET /cluster`` describes it."""

    name: str
    role: str
    """``leader``, ``replica`` or ``sync_standby``."""
    state: str
    """``running`` (a leader), ``streaming`` (a replica receiving WAL), ``stopped``, ..."""
    host: str
    lag: int | None
    """Bytes of WAL behind the leader; None for the leader and when Patroni does not know."""
    timeline: int | None

    @property
    def is_streaming_replica(self) -> bool:
        """Whether this member is a replica receiving WAL from the leader."""
        return self.role != "leader" and self.state == "streaming"


def member_from(entry: dict[str, Any]) -> Member:
    """A member from one entry of ``GET /cluster``'s ``members``."""
    lag = entry.get("lag")
    timeline = entry.get("timeline")
    return Member(
        name=str(entry["name"]),
        role=str(entry["role"]),
        state=str(entry["state"]),
        host=str(entry["host"]),
        lag=lag if isinstance(lag, int) else None,
        timeline=timeline if isinstance(timeline, int) else None,
    )


@dataclass(frozen=True)
class Node:
    """Where one node lives: its namespace, addresses and files."""

    name: str
    host: str
    postgres_port: int
    rest_url: str
    home: Path

    @property
    def netns(self) -> str:
        """The network namespace the node runs in."""
        return f"fanout-{self.name}"


def services_dir() -> Path:
    """The folder ``scripts/services.sh`` keeps its servers' data in."""
    return Path(os.environ.get("FANOUT_SERVICES_DIR", ROOT / ".services"))


def read_nodes(home: Path) -> tuple[dict[str, Node], str, int]:
    """The nodes configured under ``home`` (the service's folder), and etcd's host and port."""
    nodes: dict[str, Node] = {}
    etcd = ""
    for config_file in sorted(home.glob("*/patroni.yml")):
        config = yaml.safe_load(config_file.read_text())
        host, _, port = str(config["postgresql"]["connect_address"]).rpartition(":")
        name = str(config["name"])
        nodes[name] = Node(
            name=name,
            host=host,
            postgres_port=int(port),
            rest_url=f"http://{config['restapi']['connect_address']}",
            home=config_file.parent,
        )
        etcd = str(config["etcd3"]["hosts"])
    if not nodes:
        raise RuntimeError(f"no postgres-ha node is configured under {home}")
    etcd_host, _, etcd_port = etcd.rpartition(":")
    return nodes, etcd_host, int(etcd_port)


def pid_in(pidfile: Path) -> int | None:
    """The pid on the first line of ``pidfile``, None when there is no such file."""
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def partition_rules(etcd_host: str, etcd_port: int, others: Iterable[str]) -> list[list[str]]:
    """The iptables rules (of the partition chain, jumped to from INPUT and OUTPUT inside a
    node's namespace) that cut the node off etcd and the other nodes; the gateway address
    keeps reaching the node's PostgreSQL and REST API (etcd shares that address, hence the
    match on etcd's port)."""
    rules = [
        ["-d", etcd_host, "-p", "tcp", "--dport", str(etcd_port), "-j", "DROP"],
        ["-s", etcd_host, "-p", "tcp", "--sport", str(etcd_port), "-j", "DROP"],
    ]
    for other in others:
        rules.append(["-d", other, "-j", "DROP"])
        rules.append(["-s", other, "-j", "DROP"])
    return rules


class HaCluster:
    """The running postgres-ha cluster: its members, and ways to move, crash and cut its nodes."""

    def __init__(self, url: str, home: Path, request_timeout: float = 3.0) -> None:
        self.url = url
        """The cluster's multi-host URL (``target_session_attrs=read-write``)."""
        self.home = home
        self.nodes, self.etcd_host, self.etcd_port = read_nodes(home)
        self._timeout = request_timeout
        self._partitioned: set[str] = set()

    @classmethod
    def from_environment(cls) -> HaCluster:
        """The cluster of ``FANOUT_TEST_POSTGRES_HA_URL``, started with ``scripts/services.sh``
        when that is not set."""
        return cls(server_url("postgres-ha"), services_dir() / "postgres-ha")

    def host_of(self, name: str) -> str:
        """The address of node ``name`` (on the bridge; its PostgreSQL listens there)."""
        return self.node(name).host

    def node(self, name: str) -> Node:
        """Node ``name``; a KeyError naming the known nodes when there is none."""
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no postgres-ha node {name!r} (nodes: {sorted(self.nodes)})") from None

    def node_url(self, name: str, database: str = "fanout") -> str:
        """A URL of database ``database`` on node ``name`` alone."""
        node = self.node(name)
        credentials = urlsplit(self.url).netloc.rpartition("@")[0]
        return f"postgresql://{credentials}@{node.host}:{node.postgres_port}/{database}"

    async def members(self) -> list[Member]:
        """The members as the first reachable, not partitioned node's Patroni reports them."""
        asked = sorted(self.nodes.values(), key=lambda node: node.name in self._partitioned)
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            for node in asked:
                try:
                    response = await client.get(f"{node.rest_url}/cluster")
                    response.raise_for_status()
                except httpx.HTTPError:
                    continue
                return [member_from(entry) for entry in response.json()["members"]]
        raise ConnectionError("no Patroni REST API of the postgres-ha cluster answered")

    async def leader(self) -> Member | None:
        """The running leader, None while there is none."""
        return next(
            (m for m in await self.members() if m.role == "leader" and m.state == "running"),
            None,
        )

    async def _wait(self, what: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
        try:
            await eventually(check, within=within)
        except AssertionError:
            try:
                seen: object = await self.members()
            except ConnectionError as error:
                seen = error
            raise AssertionError(f"{what} not within {within} s; members: {seen}") from None

    async def _members_or_none(self) -> list[Member] | None:
        try:
            return await self.members()
        except ConnectionError:
            return None

    async def wait_for_leader(self, excluding: str | None = None, within: float = 60.0) -> Member:
        """Wait until a node other than ``excluding`` runs as the leader and its PostgreSQL as
        a primary (promoted, on its new timeline); return it."""
        found: list[Member] = []

        async def elected() -> bool:
            members = await self._members_or_none() or []
            found[:] = [
                m
                for m in members
                if m.role == "leader" and m.state == "running" and m.name != excluding
            ]
            if not found:
                return False
            promoted = await self._promoted(found[0].name)
            found[:] = [promoted] if promoted else []
            return promoted is not None

        await self._wait(f"a leader other than {excluding}", elected, within)
        return found[0]

    async def _promoted(self, name: str) -> Member | None:
        """Leader ``name`` once its PostgreSQL runs as a primary. (The timeline Patroni shows
        is the last checkpoint's: after a promotion it moves on a moment later.)"""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            try:
                # Patroni's health check: 200 only from a leader whose PostgreSQL is a primary.
                response = await client.get(f"{self.node(name).rest_url}/primary")
            except httpx.HTTPError:
                return None
        if response.status_code != 200:
            return None
        members = await self._members_or_none() or []
        return next((m for m in members if m.name == name and m.role == "leader"), None)

    async def wait_for_timeline(self, name: str, above: int, within: float = 30.0) -> int:
        """Wait until node ``name`` is on a timeline after ``above``; return it."""
        found: list[int] = []

        async def moved_on() -> bool:
            members = await self._members_or_none() or []
            found[:] = [m.timeline for m in members if m.name == name and m.timeline is not None]
            return bool(found) and found[0] > above

        await self._wait(f"{name} on a timeline after {above}", moved_on, within)
        return found[0]

    async def wait_for_streaming_replicas(self, n: int, within: float = 60.0) -> list[Member]:
        """Wait until there is a leader and ``n`` replicas stream from it; return the members."""
        found: list[Member] = []

        async def streaming() -> bool:
            found[:] = await self._members_or_none() or []
            leaders = [m for m in found if m.role == "leader" and m.state == "running"]
            return len(leaders) == 1 and sum(m.is_streaming_replica for m in found) >= n

        await self._wait(f"a leader and {n} streaming replicas", streaming, within)
        return found

    async def switchover(self, candidate: str | None = None, within: float = 60.0) -> Member:
        """Move the leader (to ``candidate``, or to a node Patroni picks) with a switchover;
        return the new leader once it runs."""
        current = await self.leader()
        if current is None:
            raise RuntimeError("postgres-ha has no leader to switch over from")
        body: dict[str, str] = {"leader": current.name}
        if candidate is not None:
            body["candidate"] = candidate
        url = f"{self.node(current.name).rest_url}/switchover"
        async with httpx.AsyncClient(timeout=within) as client:
            response = await client.post(url, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"switchover refused ({response.status_code}): {response.text}")
        return await self.wait_for_leader(excluding=current.name, within=within)

    async def kill_primary_postmaster(self) -> Member:
        """SIGKILL the leader's postmaster (Patroni keeps running); return the member killed."""
        leader = await self.leader()
        if leader is None:
            raise RuntimeError("postgres-ha has no leader whose postmaster to kill")
        pid = pid_in(self.node(leader.name).home / "data" / "postmaster.pid")
        if pid is None:
            raise RuntimeError(f"{leader.name} has no postmaster.pid")
        os.kill(pid, signal.SIGKILL)
        return leader

    def kill_node(self, name: str) -> None:
        """SIGKILL node ``name``'s Patroni and its postmaster."""
        node = self.node(name)
        for pidfile in (node.home / "patroni.pid", node.home / "data" / "postmaster.pid"):
            pid = pid_in(pidfile)
            if pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    async def start_node(self, name: str, within: float = 180.0) -> None:
        """Start node ``name`` again (``scripts/services.sh up postgres-ha``, which starts what
        does not run, leaves the replication mode as it is, and waits until every node streams)."""
        self.node(name)
        mode_variable = "FANOUT_SERVICES_POSTGRES_HA_MODE"
        environment = {k: v for k, v in os.environ.items() if k != mode_variable}
        await run(["bash", str(SERVICES_SCRIPT), "up", "postgres-ha"], within, environment)
        await self._wait(f"{name} running", lambda: self.runs(name), within)
        await self.wait_for_streaming_replicas(len(self.nodes) - 1, within)

    async def runs(self, name: str) -> bool:
        """Whether node ``name``'s own Patroni answers that its PostgreSQL runs (the member list
        in etcd still shows a killed node until its key expires)."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            try:
                response = await client.get(f"{self.node(name).rest_url}/health")
            except httpx.HTTPError:
                return False
        return response.status_code == 200

    async def set_mode(self, mode: Mode, within: float = 60.0) -> None:
        """Set the replication mode (PATCH /config) and wait until Patroni applies it: a
        synchronous standby in ``sync`` and ``strict``, none in ``async``."""
        if mode not in MODE_FLAGS:
            raise ValueError(f"mode must be one of {sorted(MODE_FLAGS)}, not {mode!r}")
        synchronous, strict = MODE_FLAGS[mode]
        body = {"synchronous_mode": synchronous, "synchronous_mode_strict": strict}
        leader = await self.wait_for_leader(within=within)
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            response = await client.patch(f"{self.node(leader.name).rest_url}/config", json=body)
            response.raise_for_status()

        async def applied() -> bool:
            members = await self._members_or_none() or []
            return any(m.role == "sync_standby" for m in members) == synchronous

        await self._wait(f"replication mode {mode}", applied, within)

    async def config(self) -> dict[str, Any]:
        """The cluster-wide configuration Patroni keeps in etcd (GET /config)."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            for node in self.nodes.values():
                if node.name in self._partitioned:
                    continue
                try:
                    response = await client.get(f"{node.rest_url}/config")
                    response.raise_for_status()
                except httpx.HTTPError:
                    continue
                config: dict[str, Any] = response.json()
                return config
        raise ConnectionError("no Patroni REST API of the postgres-ha cluster answered")

    async def partition(self, name: str) -> None:
        """Cut node ``name`` off etcd and the other nodes; it keeps running, and the root
        namespace still reaches its PostgreSQL and REST API."""
        node = self.node(name)
        await self.heal(name)
        others = [other.host for other in self.nodes.values() if other.name != name]
        await self._iptables(node, "-N", PARTITION_CHAIN)
        for rule in partition_rules(self.etcd_host, self.etcd_port, others):
            await self._iptables(node, "-A", PARTITION_CHAIN, *rule)
        for chain in ("INPUT", "OUTPUT"):
            await self._iptables(node, "-I", chain, "-j", PARTITION_CHAIN)
        self._partitioned.add(name)

    async def heal(self, name: str) -> None:
        """Undo :meth:`partition` of node ``name`` (nothing when it is not cut off)."""
        node = self.node(name)
        for chain in ("INPUT", "OUTPUT"):
            while await self._iptables(node, "-D", chain, "-j", PARTITION_CHAIN, check=False):
                pass
        if await self._iptables(node, "-F", PARTITION_CHAIN, check=False):
            await self._iptables(node, "-X", PARTITION_CHAIN)
        self._partitioned.discard(name)

    async def _iptables(self, node: Node, *arguments: str, check: bool = True) -> bool:
        command = ["ip", "netns", "exec", node.netns, "iptables", "-w", *arguments]
        return await run(command, 30.0, check=check)

    @asynccontextmanager
    async def exclusive(self, within: float = 600.0) -> AsyncIterator[HaCluster]:
        """Hold the cluster for the block, so that no other test (of any process) that changes
        it runs meanwhile."""
        lock_file = self.home / "changes.lock"
        with lock_file.open("a") as handle:
            deadline = time.monotonic() + within

            def locked() -> bool:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            while not locked():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock_file} was held for more than {within} s")
                await asyncio.sleep(0.1)
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    async def restore(self, mode: Mode = "sync", within: float = 120.0) -> None:
        """Bring the cluster back to whole: every node healed and running, ``mode`` set, every
        replica streaming."""
        for name in self.nodes:
            await self.heal(name)
        stopped = [name for name in self.nodes if not await self.runs(name)]
        if stopped:
            await self.start_node(stopped[0], within)
        await self.wait_for_streaming_replicas(len(self.nodes) - 1, within)
        await self.set_mode(mode, within)


async def run(
    command: list[str],
    within: float,
    environment: dict[str, str] | None = None,
    *,
    check: bool = True,
) -> bool:
    """Run ``command``; whether it succeeded (with ``check``, a failure raises, naming it)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise TimeoutError(f"{' '.join(command)} took more than {within} s") from None
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr.decode(errors='replace').strip()}")
    return process.returncode == 0
