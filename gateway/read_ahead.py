"""Reading the outbox ahead of the sink workers, once for all the workers that keep pace.

A stream reads consecutive full batches after a position in a set of partitions, until a batch
comes back short. Every worker at the same place in the same partitions follows the same
stream, so each batch is read and decoded once however many sinks the process delivers to.

A batch read earlier than it is used can only hold fewer events than one read later, never
skip one (the outbox read stops below every transaction still running), so handing a worker a
batch read for another is as safe as reading it then.

No worker waits for another (guarantee 5): the stream reads ahead as far as its leading
worker needs, and keeps only the last ``depth`` batches per worker that follows it, so it holds
no more than the workers would on their own. A worker that falls further behind is told so and
reads on from its own position, in a stream of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import asyncpg

from gateway import outbox
from gateway.outbox import StoredEvent
from gateway.relay_state import Position

_Batch = list[StoredEvent] | Exception


def _is_full(batch: _Batch, batch_size: int) -> bool:
    """Whether more may follow the batch: a short one or a failed read ends a stream."""
    return not isinstance(batch, Exception) and len(batch) == batch_size


class OutboxReads:
    """The streams of one relay process; hands each worker a :class:`StreamReader`.

    With ``shared=False`` every reader gets a stream of its own (one read per sink).
    """

    def __init__(
        self, pool: asyncpg.Pool, batch_size: int, depth: int, *, shared: bool = True
    ) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._depth = depth
        self._shared = shared
        self._streams: list[_Stream] = []

    def reader(self, after: Position, partitions: tuple[int, ...]) -> StreamReader:
        """A reader of the batches after ``after`` in ``partitions``: a place in a stream that
        holds or is about to read the batch starting there, else in a new stream."""
        if self._shared:
            for stream in self._streams:
                reader = stream.join(after, partitions)
                if reader is not None:
                    return reader
        stream = _Stream(self._pool, after, partitions, self._batch_size, self._depth, self._forget)
        self._streams.append(stream)
        reader = stream.join(after, partitions)
        assert reader is not None  # a new stream is about to read from ``after``
        return reader

    @property
    def streams(self) -> int:
        """How many streams have readers (the last reader to leave a stream stops it)."""
        return len(self._streams)

    def _forget(self, stream: _Stream) -> None:
        self._streams.remove(stream)


class StreamReader:
    """One worker's place in a stream."""

    def __init__(self, stream: _Stream, cursor: int, after: Position) -> None:
        self.after = after
        """Where the next batch handed out starts."""
        self._stream = stream
        self.cursor = cursor
        self._ended = False

    def serves(self, after: Position, partitions: tuple[int, ...]) -> bool:
        """Whether the next batch handed out is the one after ``after`` in ``partitions``
        (never, once a short batch or a failed read has ended the reading)."""
        return not self._ended and after == self.after and partitions == self._stream.partitions

    async def next_batch(self) -> list[StoredEvent] | None:
        """The next batch (waiting for its read); raises what the read raised.

        ``None`` if this reader fell so far behind that the stream no longer holds its next
        batch: the caller reads on in a new reader. After a short batch there is no next one.
        """
        if self._ended:
            raise RuntimeError("the reading has ended (a short batch or a failed read)")
        batch = await self._stream.take(self)
        if batch is None:
            self._ended = True
            return None
        self._ended = not _is_full(batch, self._stream.batch_size)
        if isinstance(batch, Exception):
            raise batch
        if batch:
            self.after = batch[-1].position
        return batch

    async def close(self) -> None:
        """Leave the stream; the last reader to leave stops it."""
        await self._stream.leave(self)


class _Stream:
    def __init__(
        self,
        pool: asyncpg.Pool,
        start: Position,
        partitions: tuple[int, ...],
        batch_size: int,
        depth: int,
        forget: Callable[[_Stream], None],
    ) -> None:
        self.partitions = partitions
        self.batch_size = batch_size
        self._pool = pool
        self._depth = depth
        self._forget = forget
        # The batches held, each with the position it starts after; ``_dropped`` were before.
        self._held: deque[tuple[Position, _Batch]] = deque()
        self._dropped = 0
        self._next_start = start
        self._ended = False
        self._readers: set[StreamReader] = set()
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read_until_short(), name="relay-read-ahead")

    def join(self, after: Position, partitions: tuple[int, ...]) -> StreamReader | None:
        """A reader whose next batch starts at ``after``, if this stream holds or is about to
        read that batch."""
        if partitions != self.partitions:
            return None
        # Only at a full batch: a short one (or a failed read) ended the stream, and a worker
        # joining there reads afresh rather than take a stale "nothing more" or an old error.
        cursor = next(
            (
                self._dropped + i
                for i, (start, batch) in enumerate(self._held)
                if start == after and _is_full(batch, self.batch_size)
            ),
            None,
        )
        if cursor is None and not self._ended and self._next_start == after:
            cursor = self._read_count
        if cursor is None:
            return None
        reader = StreamReader(self, cursor, after)
        self._readers.add(reader)
        self._notify()
        return reader

    async def take(self, reader: StreamReader) -> _Batch | None:
        """The reader's next batch, once read; None if it is no longer held."""
        while True:
            changed = self._changed
            if reader.cursor < self._dropped:
                return None
            if reader.cursor < self._read_count:
                _, batch = self._held[reader.cursor - self._dropped]
                reader.cursor += 1
                self._notify()
                return batch
            if self._ended:
                raise RuntimeError("the stream has ended")
            await changed.wait()

    async def leave(self, reader: StreamReader) -> None:
        self._readers.discard(reader)
        if self._readers:
            self._notify()
            return
        self._forget(self)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @property
    def _read_count(self) -> int:
        return self._dropped + len(self._held)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _wanted(self) -> bool:
        """Whether some reader will need a batch not read yet within ``depth`` batches."""
        return any(reader.cursor + self._depth > self._read_count for reader in self._readers)

    async def _read_until_short(self) -> None:
        while True:
            while not self._wanted():
                await self._changed.wait()  # a reader joined, took a batch or left
            start = self._next_start
            try:
                async with self._pool.acquire() as connection:
                    batch = await outbox.read_batch(
                        connection, start, self.partitions, self.batch_size
                    )
            except Exception as error:  # handed to the readers in the batch's place
                self._hold(start, error)
                return
            self._hold(start, batch)
            if len(batch) < self.batch_size:
                return
            self._next_start = batch[-1].position

    def _hold(self, start: Position, batch: _Batch) -> None:
        self._held.append((start, batch))
        while len(self._held) > self._depth * max(1, len(self._readers)):
            self._held.popleft()
            self._dropped += 1
        if not _is_full(batch, self.batch_size):
            self._ended = True
        self._notify()
