"""Reading the outbox ahead of a sink worker, so PostgreSQL and the store work at once."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway import outbox
from gateway.outbox import StoredEvent
from gateway.relay_state import Position


class ReadAhead:
    """Reads consecutive full batches after ``after`` in ``partitions``, ``depth`` at most
    waiting at a time, until a batch comes back short.

    A batch read earlier than it is used can only hold fewer events than one read later,
    never skip one (the outbox read stops below every transaction still running), so using
    it is as safe as reading then. It is good only for a worker whose next batch starts where
    the reader will continue (:attr:`after`) in the same partitions.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        after: Position,
        partitions: tuple[int, ...],
        batch_size: int,
        depth: int,
    ) -> None:
        self.after = after
        self.partitions = partitions
        self._pool = pool
        self._batch_size = batch_size
        self._batches: asyncio.Queue[list[StoredEvent] | Exception] = asyncio.Queue(depth)
        self._ended = False
        self._task = asyncio.create_task(self._read_until_short(), name="relay-read-ahead")

    def serves(self, after: Position, partitions: tuple[int, ...]) -> bool:
        """Whether the next batch handed out is the one after ``after`` in ``partitions``
        (never, once a short batch or a failed read has ended the reading)."""
        return not self._ended and after == self.after and partitions == self.partitions

    async def next_batch(self) -> list[StoredEvent]:
        """The next batch (waiting for its read); raises what the read raised.

        After a short batch there is no next one: the caller starts a new reader.
        """
        if self._ended:
            raise RuntimeError("the read-ahead has ended (a short batch or a failed read)")
        batch = await self._batches.get()
        self._ended = isinstance(batch, Exception) or len(batch) < self._batch_size
        if isinstance(batch, Exception):
            raise batch
        if batch:
            self.after = batch[-1].position
        return batch

    async def close(self) -> None:
        """Stop reading; drop what was read (and any error)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read_until_short(self) -> None:
        after = self.after
        while True:
            try:
                async with self._pool.acquire() as connection:
                    batch = await outbox.read_batch(
                        connection, after, self.partitions, self._batch_size
                    )
            except Exception as error:  # handed to the caller in the batch's place
                await self._batches.put(error)
                return
            await self._batches.put(batch)
            if len(batch) < self._batch_size:
                return
            after = batch[-1].position
