"""Where a batch is read: the outbox read ahead of the sink workers, once for all that keep pace.

A stream reads consecutive full batches after a position in a set of partitions, until a batch
comes back short (or a read fails). Every worker at the same place in the same partitions
follows the same stream, so each batch is read and decoded once however many sinks the process
delivers to.

Invariants kept here:

- A batch read earlier than it is used can only hold fewer events than one read later, never
  skip one (the outbox read stops below every transaction still running), so handing a worker
  a batch read for another is as safe as reading it then.
- No worker waits for another (guarantee 5): the stream reads ahead as far as its leading
  worker needs, and keeps only the last ``depth`` reads per worker that follows it, so it holds
  no more than the workers would on their own. A worker that falls further behind is told so
  (``next_batch`` returns None) and reads on from its own position, in a stream of its own.
- A stream ends with its first short batch or failed read; nobody joins a stream there, so a
  worker never takes a stale "nothing more" or an old error for a fresh read.
- Each read says which server it was asked of (``server_changes`` when it started), so a
  worker never takes a batch the previous primary answered for one of the new primary's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.postgres.outbox import StoredEvent
from gateway.relay.tables import Position

ReadBatch = Callable[[Position, Sequence[int], int], Awaitable[list[StoredEvent]]]
"""Reads up to ``limit`` events of ``partitions`` after a position (``RelayStorage.read_batch``)."""


@dataclass(frozen=True)
class _Read:
    """One read of a stream: where it started, and its events or what it raised."""

    start: Position
    events: list[StoredEvent]
    error: Exception | None
    full: bool
    """Whether the stream goes on after it: a full batch, read without error."""
    server: int
    """The storage's server changes when the read started."""


class OutboxReads:
    """The streams of one relay process; hands each worker a :class:`StreamReader`.

    With ``shared=False`` every reader gets a stream of its own (one read per sink).
    """

    def __init__(
        self,
        read: ReadBatch,
        batch_size: int,
        depth: int,
        *,
        shared: bool = True,
        server_changes: Callable[[], int] = lambda: 0,
    ) -> None:
        self._read = read
        self._server_changes = server_changes
        self._batch_size = batch_size
        self._depth = depth
        self._shared = shared
        self._streams: list[_Stream] = []

    async def reader(self, after: Position, partitions: tuple[int, ...]) -> StreamReader:
        """A reader of the batches after ``after`` in ``partitions``: a place in a stream that
        holds or is about to read the batch starting there, else in a new stream."""
        if self._shared:
            for stream in self._streams:
                reader = await stream.join(after, partitions)
                if reader is not None:
                    return reader
        stream = _Stream(
            self._read,
            self._server_changes,
            after,
            partitions,
            self._batch_size,
            self._depth,
            self._forget,
        )
        self._streams.append(stream)
        reader = await stream.join(after, partitions)
        assert reader is not None  # a new stream is about to read from ``after``
        return reader

    @property
    def streams(self) -> int:
        """How many streams have readers (the last reader to leave a stream stops it)."""
        return len(self._streams)

    def _forget(self, stream: _Stream) -> None:
        self._streams.remove(stream)


class StreamReader:
    """One worker's place in a stream: the number of the next read it takes."""

    def __init__(self, stream: _Stream, cursor: int, after: Position) -> None:
        self.after = after
        """Where the next batch handed out starts."""
        self.cursor = cursor
        self._stream = stream
        self._last: _Read | None = None
        self._fell_behind = False

    @property
    def server(self) -> int | None:
        """The server changes when the last batch handed out was read (None before one)."""
        return None if self._last is None else self._last.server

    @property
    def ended(self) -> bool:
        """Whether no batch follows: the last one was short or failed, or the reader fell
        behind its stream."""
        return self._fell_behind or (self._last is not None and not self._last.full)

    def serves(self, after: Position, partitions: tuple[int, ...]) -> bool:
        """Whether the next batch handed out is the one after ``after`` in ``partitions``."""
        return not self.ended and after == self.after and partitions == self._stream.partitions

    async def next_batch(self) -> list[StoredEvent] | None:
        """The next batch (waiting for its read); raises what the read raised.

        ``None`` if this reader fell so far behind that the stream no longer holds its next
        batch: the caller reads on in a new reader. After a short batch there is no next one.
        """
        if self.ended:
            raise RuntimeError("the reading has ended (a short batch or a failed read)")
        read = await self._stream.take(self)
        if read is None:
            self._fell_behind = True
            return None
        self._last = read
        if read.error is not None:
            raise read.error
        if read.events:
            self.after = read.events[-1].position
        return read.events

    async def close(self) -> None:
        """Leave the stream; the last reader to leave stops it."""
        await self._stream.leave(self)


class _Stream:
    """Consecutive reads after a position, numbered from 0; the last few are held."""

    def __init__(
        self,
        read: ReadBatch,
        server_changes: Callable[[], int],
        start: Position,
        partitions: tuple[int, ...],
        batch_size: int,
        depth: int,
        forget: Callable[[_Stream], None],
    ) -> None:
        self.partitions = partitions
        self.batch_size = batch_size
        self._read = read
        self._server_changes = server_changes
        self._depth = depth
        self._forget = forget
        self._held: dict[int, _Read] = {}
        """The last reads, by number (oldest first)."""
        self._count = 0
        """How many reads were made: the number the next one gets."""
        self._next_start = start
        self._readers: set[StreamReader] = set()
        self._changed = asyncio.Condition()
        """Notified when a read is held, or a reader joins, takes or leaves."""
        self._task = asyncio.create_task(self._read_until_short(), name="relay-read-ahead")

    @property
    def _ended(self) -> bool:
        last = self._held.get(self._count - 1)
        return last is not None and not last.full

    async def join(self, after: Position, partitions: tuple[int, ...]) -> StreamReader | None:
        """A reader whose next batch starts at ``after``, if this stream holds (as a full
        batch, asked of the server answering now) or is about to read that batch."""
        if partitions != self.partitions:
            return None
        async with self._changed:
            server = self._server_changes()
            cursor = next(
                (
                    n
                    for n, read in self._held.items()
                    if read.start == after and read.full and read.server == server
                ),
                None,
            )
            if cursor is None and not self._ended and self._next_start == after:
                cursor = self._count
            if cursor is None:
                return None
            reader = StreamReader(self, cursor, after)
            self._readers.add(reader)
            self._changed.notify_all()
        return reader

    async def take(self, reader: StreamReader) -> _Read | None:
        """The reader's next read, once made; None if it is no longer held."""
        async with self._changed:
            await self._changed.wait_for(lambda: reader.cursor < self._count or self._ended)
            if reader.cursor >= self._count:
                raise RuntimeError("the stream has ended")
            read = self._held.get(reader.cursor)
            if read is None:
                return None
            reader.cursor += 1
            self._changed.notify_all()
            return read

    async def leave(self, reader: StreamReader) -> None:
        async with self._changed:
            self._readers.discard(reader)
            self._changed.notify_all()
            if self._readers:
                return
        self._forget(self)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def _wanted(self) -> bool:
        """Whether some reader will need a read not made yet within ``depth`` reads."""
        return any(reader.cursor + self._depth > self._count for reader in self._readers)

    async def _read_until_short(self) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(self._wanted)
            start, server = self._next_start, self._server_changes()
            try:
                events = await self._read(start, self.partitions, self.batch_size)
            except Exception as error:  # handed to the readers in the batch's place
                await self._hold(_Read(start, [], error, full=False, server=server))
                return
            read = _Read(start, events, None, full=len(events) == self.batch_size, server=server)
            await self._hold(read)
            if not read.full:
                return
            self._next_start = events[-1].position

    async def _hold(self, read: _Read) -> None:
        async with self._changed:
            self._held[self._count] = read
            self._count += 1
            while len(self._held) > self._depth * max(1, len(self._readers)):
                del self._held[next(iter(self._held))]
            self._changed.notify_all()
