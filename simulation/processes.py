"""Relay processes of the simulation: the real :class:`~gateway.relay.Relay`, over a client of
the shared storage and of the stores that dies with its process (a crash writes nothing more)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, cast

from gateway.configuration.settings import RelaySettings
from gateway.relay import Relay
from gateway.relay.storage import RelayStorage
from simulation.faults import Killed, ProcessLife, ProcessSink, Store
from simulation.relay_storage import InMemoryRelayStorage

CURRENT_PROCESS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "simulated_process", default=None
)

CommitHook = Callable[[str, str, dict[int, Any], bool, dict[str, Any]], None]


class ProcessStorage:
    """One process's client of the shared storage: every call is a possible crash point."""

    def __init__(
        self, storage: InMemoryRelayStorage, life: ProcessLife, on_commit: CommitHook
    ) -> None:
        self._storage = storage
        self._life = life
        self._on_commit = on_commit

    def server_changes(self) -> int:
        """The process's own count (its pool's), read without a call to the storage."""
        return self._storage.server_changes()

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        method = getattr(self._storage, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            lands = self._life.effect_lands
            self._life.check()
            crashing = not self._life.alive_after_call()
            if crashing and not lands:
                raise Killed
            before = self._snapshot() if name == "commit_batch" else {}
            result = await method(*args, **kwargs)
            if name == "commit_batch":
                self._on_commit(args[0], args[1], dict(args[2]), bool(result), before)
            if crashing:
                raise Killed
            return result

        return call

    def _snapshot(self) -> dict[str, Any]:
        storage = self._storage
        return {
            "positions": {key: row.position for key, row in storage.rows.items()},
            "dead": len(storage.dead_letter_rows),
            "leases": {key: lease.owner for key, lease in storage.leases.items()},
        }


class TaskRegistry:
    """Which process each task belongs to (tasks inherit their creator's process)."""

    def __init__(self) -> None:
        self.tasks: dict[str, set[asyncio.Task[Any]]] = {}

    def factory(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        process = CURRENT_PROCESS.get()
        if process is not None:
            owned = self.tasks.setdefault(process, set())
            owned.add(task)
            task.add_done_callback(owned.discard)
        return task


class RelayProcess:
    """A relay process: started over some stores, stopped gracefully or killed."""

    def __init__(
        self,
        name: str,
        storage: InMemoryRelayStorage,
        stores: list[Store],
        settings: RelaySettings,
        on_commit: CommitHook,
        registry: TaskRegistry,
    ) -> None:
        self.name = name
        self.life = ProcessLife()
        self.stores = [store.name for store in stores]
        sinks = [ProcessSink(store, self.life) for store in stores]
        client = cast(RelayStorage, ProcessStorage(storage, self.life, on_commit))
        self.relay = Relay(None, None, sinks, settings, storage=client)
        self._registry = registry
        token = CURRENT_PROCESS.set(name)
        try:
            self.task = asyncio.create_task(self._run(), name=f"sim-{name}")
        finally:
            CURRENT_PROCESS.reset(token)

    async def _run(self) -> None:
        with contextlib.suppress(Killed):
            await self.relay.run()

    @property
    def instance_id(self) -> str:
        return self.relay.instance_id

    @property
    def running(self) -> bool:
        return not self.task.done()

    @property
    def serving(self) -> bool:
        """Running, alive and not asked to stop."""
        return self.running and self.life.alive and not self.relay.stopping.is_set()

    def stop(self) -> None:
        """Ask the relay to stop (SIGTERM)."""
        self.relay.stop()

    async def kill(self) -> None:
        """SIGKILL: from now on nothing it does has an effect; its tasks are ended, and the
        server sees its liveness session end (the kernel closes its sockets)."""
        self.life.alive = False
        await self.reap()
        await self.relay.liveness.close()

    async def reap(self, within: float = 60.0) -> None:
        """End every task of a dead process (bounded, in virtual time)."""
        tasks = set(self._registry.tasks.get(self.name, set())) | {self.task}
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=within)
