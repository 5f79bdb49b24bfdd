"""One simulated run: relays, writers, faults and operators, all chosen by one seed, with the
invariants checked after every step and at the end."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.configuration.settings import RelaySettings
from gateway.errors import SinkInUse, UnknownSink
from gateway.postgres.outbox import PARTITIONS
from simulation import invariants
from simulation.clock import Stalled, VirtualTimeLoop
from simulation.determinism import deterministic
from simulation.faults import Store
from simulation.invariants import Ledger
from simulation.processes import RelayProcess, TaskRegistry
from simulation.relay_storage import InMemoryRelayStorage
from simulation.writers import Writers

SETTINGS = RelaySettings(
    batch_size=4,
    batches_in_flight=2,
    linger_ms=0,
    poll_interval_seconds=0.2,
    lease_ttl_seconds=3.0,
    max_attempts=3,
    backoff_initial_seconds=0.05,
    backoff_max_seconds=1.0,
    prune_interval_seconds=7,
    retention_seconds=20,
    shutdown_timeout_seconds=2,
)
MAX_RELAYS = 3
SETTLE_SECONDS = 900.0
"""How long (virtual) the relays get at the end, faults over, to deliver everything."""


@dataclass(frozen=True)
class Faults:
    """Which faults a run may inject."""

    hangs: bool = True
    """Sink calls that never answer."""
    rewinds: bool = True
    failovers: bool = True
    """PostgreSQL failing over to an asynchronous standby that lost the last commits."""


@dataclass
class Outcome:
    """A run's trace and what went wrong (nothing, if ``violations`` is empty)."""

    seed: int
    trace: list[str]
    violations: list[str]
    step: int | None
    """The step after which the first violation was seen."""

    @property
    def digest(self) -> str:
        """A fingerprint of the trace: the same seed gives the same one."""
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class World:
    """The simulated world of one seed."""

    seed: int
    steps: int
    faults: Faults
    loop: VirtualTimeLoop
    verbose: bool = False
    rng: random.Random = field(init=False)
    trace: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.storage = InMemoryRelayStorage(clock=self.loop.time)
        self.stores = [Store("docs", ordered=False), Store("log", ordered=True)]
        self.legacy = Store("legacy", ordered=False)
        self.legacy_removed = False
        self.legacy_retired = False
        self.writers = Writers(self.storage, [*self.stores, self.legacy], self.rng)
        self.ledger = Ledger()
        self.registry = TaskRegistry()
        self.processes: list[RelayProcess] = []
        self.started = 0
        self.step = 0
        self.owed_on_standby: dict[Any, int] = {}
        """The ledger's owed deliveries as of the standby's last catch-up."""

    def log(self, text: str) -> None:
        line = f"{self.step:4d} t={self.loop.time():8.3f} {text}"
        self.trace.append(line)
        if self.verbose:
            print(line)

    def commit_seen(
        self, sink: str, owner: str, moves: dict[int, Any], committed: bool, before: dict[str, Any]
    ) -> None:
        self.ledger.violations.extend(
            invariants.check_commit(self.storage, sink, owner, moves, committed, before)
        )

    # Actors --------------------------------------------------------------------------------

    def start_relay(self) -> str:
        alive = [p for p in self.processes if p.running]
        if len(alive) >= MAX_RELAYS:
            return "relays: already at most"
        self.started += 1
        stores = [*self.stores] + ([] if self.legacy_removed else [self.legacy])
        process = RelayProcess(
            f"r{self.started}", self.storage, stores, SETTINGS, self.commit_seen, self.registry
        )
        self.processes.append(process)
        return f"relays: {process.name} ({process.instance_id}) started on {process.stores}"

    def pick(self) -> RelayProcess | None:
        alive = [p for p in self.processes if p.running and p.life.alive]
        return self.rng.choice(alive) if alive else None

    async def kill_relay(self) -> str:
        process = self.pick()
        if process is None:
            return "relays: none to kill"
        await process.kill()
        return f"relays: {process.name} killed"

    def plan_crash(self) -> str:
        process = self.pick()
        if process is None:
            return "relays: none to crash"
        process.life.calls_left = self.rng.randint(1, 40)
        process.life.effect_lands = self.rng.random() < 0.5
        return (
            f"relays: {process.name} to crash at its {process.life.calls_left}th storage call"
            f" ({'after' if process.life.effect_lands else 'before'} its effect)"
        )

    def stop_relay(self) -> str:
        process = self.pick()
        if process is None:
            return "relays: none to stop"
        process.stop()
        return f"relays: {process.name} asked to stop"

    def expire_lease(self) -> str:
        if not self.storage.leases:
            return "leases: none"
        key = self.rng.choice(sorted(self.storage.leases))
        self.storage.leases[key].expires = self.loop.time() - 0.001
        return f"leases: {key} expired ({self.storage.leases[key].owner})"

    def store_fault(self) -> str:
        store = self.rng.choice([*self.stores, self.legacy])
        roll = self.rng.random()
        if roll < 0.4:
            store.down = not store.down
            return f"stores: {store.name} {'down' if store.down else 'up'}"
        if roll < 0.8 or not self.faults.hangs:
            store.slow_seconds = self.rng.choice([0.0, 0.0, 0.5, 4.0])
            return f"stores: {store.name} answers in {store.slow_seconds} s"
        store.hang_next += 1
        return f"stores: {store.name}'s next call never answers"

    def rewind(self) -> str:
        sink = self.rng.choice([s.name for s in self.stores])
        moves = {}
        for partition in self.rng.sample(PARTITIONS, 4):
            kept = [e for e in self.storage.events if e.partition == partition]
            if kept:
                first = self.rng.choice(kept)
                moves[partition] = (first.txid, first.id - 1)
        try:
            moved = self.storage.rewind(sink, moves)
        except (SinkInUse, UnknownSink) as error:
            return f"operator: rewind of {sink} refused: {type(error).__name__}"
        store = next(s for s in self.stores if s.name == sink)
        for partition, old in moved.items():
            new = self.storage.rows[(sink, partition)].position
            for event in self.storage.events:
                if event.partition == partition and new < event.position <= old:
                    event_id = event.envelope.event_id
                    if event_id not in store.permanent:
                        self.ledger.owed[(sink, event_id)] = store.seen.get(event_id, 0)
        self.ledger.rewound(sink, {p: self.storage.rows[(sink, p)].position for p in moved})
        return f"operator: rewound {sink} in partitions {sorted(moved)}"

    def stall_and_rewind(self) -> str:
        jump = self.rng.uniform(1.0, 3.0) * SETTINGS.lease_ttl_seconds
        self.loop.jump(jump)
        text = f"clock: jumped {jump:.2f} s"
        if self.faults.rewinds:
            text += "; " + self.rewind()
        return text

    def catch_up_standby(self) -> str:
        self.storage.catch_up_standby()
        self.owed_on_standby = dict(self.ledger.owed)
        return "database: the standby caught up"

    def fail_over(self) -> str:
        lost = self.storage.fail_over()
        ended = self.writers.lose(lost)
        self.ledger.lost.extend(lost)
        self.ledger.owed = dict(self.owed_on_standby)
        self.ledger.positions.clear()  # they went back with the database
        return (
            f"database: failed over, {len(lost)} committed events lost, "
            f"{ended} open transactions ended"
        )

    def replay(self) -> str:
        sink = self.rng.choice([s.name for s in self.stores])
        return f"operator: replay of {sink}: {self.storage.request_replay(sink)} dead letters"

    def retire_legacy(self) -> str:
        if self.legacy_retired:
            return "operator: legacy already retired"
        if not self.legacy_removed:
            self.legacy_removed = True
            return "operator: legacy removed from the configuration (restarts drop it)"
        try:
            self.storage.retire("legacy")
        except (SinkInUse, UnknownSink) as error:
            return f"operator: retire refused: {type(error).__name__}"
        self.legacy_retired = True
        self.ledger.retired("legacy")
        return "operator: legacy retired"

    # The run ------------------------------------------------------------------------------

    async def act(self) -> str:
        actions: list[tuple[float, Any]] = [
            (30, self.writers.begin),
            (30, self.writers.end),
            (4, self.start_relay),
            (2, self.kill_relay),
            (2, self.plan_crash),
            (1, self.stop_relay),
            (2, self.expire_lease),
            (4, self.store_fault),
            (1, self.stall_and_rewind),
            (1, self.replay),
            (0.5, self.retire_legacy),
        ]
        if self.faults.rewinds:
            actions.append((1, self.rewind))
        if self.faults.failovers:
            actions.extend([(3, self.catch_up_standby), (0.7, self.fail_over)])
        action = self.rng.choices([a for _, a in actions], [w for w, _ in actions])[0]
        result = action()
        return str(await result if asyncio.iscoroutine(result) else result)

    async def check(self) -> None:
        violations = self.ledger.violations
        violations.extend(invariants.check_positions_forward(self.storage, self.ledger))
        violations.extend(invariants.check_no_outage_dead_letters(self.storage))
        for store in self.stores:
            violations.extend(invariants.check_version_order(store))
        for process in self.processes:
            if not process.life.alive and process.running:
                await process.reap()

    async def run(self) -> Outcome:
        first_bad: int | None = None
        self.log(f"seed {self.seed}")
        self.log(self.start_relay())
        for step in range(1, self.steps + 1):
            self.step = step
            self.log(await self.act())
            await asyncio.sleep(self.rng.expovariate(1 / 0.3))
            await self.check()
            if self.ledger.violations:
                first_bad = self.step
                break
        if first_bad is None:
            await self.settle()
            if self.ledger.violations:
                first_bad = self.step
        await self.shut_down()
        return Outcome(self.seed, self.trace, list(self.ledger.violations), first_bad)

    def undelivered(self) -> list[str]:
        found = []
        for store in self.stores:
            found.extend(
                invariants.check_delivered(store, self.writers.committed, self.storage, self.ledger)
            )
        return found

    async def settle(self) -> None:
        """Faults over: every store heals, writers commit, a relay runs; then everything
        committed must arrive (or be dead-lettered) within a bounded virtual time."""
        self.step += 1
        for store in [*self.stores, self.legacy]:
            store.down = store.answered_down = False
            store.slow_seconds, store.hang_next = 0.0, 0
        self.writers.commit_all()
        for process in self.processes:
            process.life.calls_left = None
        if not any(p.serving for p in self.processes):
            self.log(self.start_relay())
        self.log("settling: faults over")
        deadline = self.loop.time() + SETTLE_SECONDS
        while self.loop.time() < deadline and self.undelivered():
            await asyncio.sleep(5)
            await self.check()
        self.ledger.violations.extend(self.undelivered())
        self.log(f"settled: {len(self.ledger.violations)} violations")

    async def shut_down(self) -> None:
        for process in self.processes:
            if process.running:
                process.life.alive = False
                await process.reap()


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The relay's warnings would drown the trace; the trace says what happened."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def simulate(
    seed: int, steps: int = 200, faults: Faults = Faults(), verbose: bool = False
) -> Outcome:
    """Run seed ``seed`` for ``steps`` steps in a loop of its own."""
    loop = VirtualTimeLoop()
    world = World(seed, steps, faults, loop, verbose)
    loop.set_task_factory(world.registry.factory)  # type: ignore[arg-type]
    loop.set_exception_handler(lambda loop, context: None)  # dead processes' tasks
    try:
        with deterministic(world.rng, loop.time), quiet_logs():
            return loop.run_until_complete(_run(world))
    finally:
        loop.close()


async def _run(world: World) -> Outcome:
    try:
        return await world.run()
    except Stalled as error:
        world.log(f"stalled: {error}")
        return Outcome(world.seed, world.trace, [f"stalled: {error}"], world.step)
