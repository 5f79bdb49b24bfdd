"""The processes ``bench/moves.py`` runs beside its load, as an operator would: a relay that
delivers every database's outbox to an in-memory sink, and a mover that moves one customer at
a time when asked (``fanout shards move`` in a process of its own). Neither one's work runs
in the load's event loop, so the load's latencies are the servers', not this process's CPU.

Both time on ``time.monotonic``, the system's monotonic clock, which the load's process shares.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as StopFlag
from types import TracebackType
from typing import Self

import asyncpg

from bench.move_figures import Span
from gateway import Gateway, Settings
from gateway.sharding.mover import MoveResult
from gateway.sharding.relays import ShardedRelay
from support.sharding import ShardedDatabases

MEMORY_SINK = "memory"
STOP_WITHIN_SECONDS = 60.0


def relay_settings(databases: ShardedDatabases) -> Settings:
    """Every database relayed to one in-memory sink, with the relay's default settings."""
    memory = {"postgres": {"url": databases.catalog}, "sinks": {MEMORY_SINK: {"type": "memory"}}}
    sinks = Settings.model_validate(memory).sinks
    return databases.settings(pool_min_size=1, pool_max_size=6).model_copy(update={"sinks": sinks})


@asynccontextmanager
async def relaying(
    databases: ShardedDatabases, pools: Sequence[asyncpg.Pool]
) -> AsyncIterator[None]:
    """A relay process delivering every database's outbox while inside (entered once every
    database's relay has registered its sink); afterwards the sink's positions are deleted
    from every database in ``pools``: a registered sink that no longer moves would hold every
    later move's pause."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=_relay_process, args=(databases, stop, sending))
    process.start()
    sending.close()  # only the child writes: if it dies, recv raises EOFError instead of hanging
    try:
        if await asyncio.to_thread(receiving.recv) != "ready":
            raise RuntimeError("the relay process did not start")
        yield
    finally:
        stop.set()
        await _ended(process)
        for pool in pools:
            await pool.execute("DELETE FROM relay_positions WHERE sink = $1", MEMORY_SINK)


def _relay_process(databases: ShardedDatabases, stop: StopFlag, ready: Pipe) -> None:
    asyncio.run(_relay_main(databases, stop, ready))


async def _relay_main(databases: ShardedDatabases, stop: StopFlag, ready: Pipe) -> None:
    async with await ShardedRelay.connect(relay_settings(databases)) as relay:
        running = asyncio.create_task(relay.run())
        registered = asyncio.create_task(_registered(relay))
        await asyncio.wait([running, registered], return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()  # raises what ended it
            raise RuntimeError("the relay ended before it was ready")
        ready.send("ready")
        await asyncio.to_thread(stop.wait)
        relay.stop()
        await running


async def _registered(relay: ShardedRelay) -> None:
    for each in relay.relays.values():
        await each.ready.wait()


async def _ended(process: BaseProcess) -> None:
    await asyncio.to_thread(process.join, STOP_WITHIN_SECONDS)
    if process.is_alive():
        process.terminate()
        await asyncio.to_thread(process.join)


def next_shard(shards: Sequence[str] | Mapping[str, object], source: str) -> str:
    """The shard after ``source`` in name order (the first after the last)."""
    ordered = sorted(shards)
    return ordered[(ordered.index(source) + 1) % len(ordered)]


class Mover:
    """A process that moves customers, one at a time, each to the shard after its own."""

    def __init__(self, databases: ShardedDatabases) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, self._child = context.Pipe()
        self._process = context.Process(target=_mover_process, args=(databases, self._child))

    async def move(
        self, customer_id: uuid.UUID, pause_timeout: float
    ) -> tuple[str, str, Span, MoveResult]:
        """Move the customer to the next shard: from where, to where, the span of the
        ``move_customer`` call, and its result; ``RuntimeError`` when the call raised."""
        self._pipe.send((customer_id, pause_timeout))
        reply = await asyncio.to_thread(self._pipe.recv)
        if isinstance(reply, str):
            raise RuntimeError(f"moving customer {customer_id} failed: {reply}")
        source, target, span, result = reply
        return source, target, span, result

    async def __aenter__(self) -> Self:
        self._process.start()
        self._child.close()  # if the child dies, recv raises EOFError instead of hanging
        if await asyncio.to_thread(self._pipe.recv) != "ready":
            raise RuntimeError("the mover process did not start")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process.is_alive():
            self._pipe.send(None)
        await _ended(self._process)


def _mover_process(databases: ShardedDatabases, pipe: Pipe) -> None:
    asyncio.run(_mover_main(databases, pipe))


async def _mover_main(databases: ShardedDatabases, pipe: Pipe) -> None:
    async with await Gateway.connect(databases.settings(pool_min_size=1, pool_max_size=6)) as g:
        pipe.send("ready")
        while (command := await asyncio.to_thread(pipe.recv)) is not None:
            customer_id, pause_timeout = command
            try:
                source = await g.sharding.shard_of_customer(customer_id)
                target = next_shard(g.sharding.shards, source)
                begun = time.monotonic()
                result = await g.sharding.move_customer(
                    customer_id, target, pause_timeout=pause_timeout
                )
                pipe.send((source, target, Span(begun, time.monotonic()), result))
            except Exception as error:  # reported to the run, which fails with it
                pipe.send(f"{type(error).__name__}: {error}")
