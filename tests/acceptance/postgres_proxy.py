"""A TCP proxy in front of the test PostgreSQL that plays a server restarting: while it is
"down" it resets every connection it accepts (an RST, as a client connecting to a PostgreSQL
that is going away meets), and it can reset the connections it is forwarding."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from urllib.parse import urlsplit, urlunsplit

LINGER_THEN_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on with a timeout of 0: closing the socket sends an RST, not a FIN."""


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop ``writer``'s connection with an RST: the peer reads ``Connection reset by peer``."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_THEN_RESET)
    writer.transport.abort()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until either side ends."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


class ResettingProxy:
    """Forwards connections to ``target`` while ``forwarding``; resets them otherwise."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target_url = target_url
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.forwarding = False
        self.resets = 0
        """How many connections were reset on arrival."""
        self.forwarded = 0
        """How many connections were forwarded."""
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The target's URL with the proxy's address in place of the server's."""
        parts = urlsplit(self._target_url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        self.reset_open_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def reset_open_connections(self) -> None:
        """Reset every forwarded connection, both ways (a server going down mid-session)."""
        for writer in list(self._open):
            reset(writer)
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.forwarding:
            self.resets += 1
            reset(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            reset(writer)
            return
        self.forwarded += 1
        self._open |= {writer, upstream_writer}
        try:
            await asyncio.gather(
                pipe(reader, upstream_writer), self._answers(upstream_reader, writer)
            )
        finally:
            self._open -= {writer, upstream_writer}

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy the server's messages to the client."""
        await pipe(reader, writer)


COMMIT_COMPLETE = b"C\x00\x00\x00\x0bCOMMIT\x00"
"""The server's CommandComplete message for a COMMIT (tag, length 11, "COMMIT")."""


class AnswerLosingProxy(ResettingProxy):
    """Forwards connections; once armed, the first COMMIT the server completes has its answer
    lost: the client's connection is reset instead of receiving it (a primary failing over
    between its commit and the reply, as the client sees it)."""

    def __init__(self, target_url: str) -> None:
        super().__init__(target_url)
        self.forwarding = True
        self.armed = False
        self.answers_lost = 0
        """How many commits' answers were lost."""

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy the server's messages to the client, until an armed proxy sees a COMMIT
        complete: then reset the client's connection, the server's answer unsent."""
        tail = b""
        try:
            while data := await reader.read(65536):
                seen = tail + data
                if self.armed and COMMIT_COMPLETE in seen:
                    self.armed = False
                    self.answers_lost += 1
                    reset(writer)
                    return
                tail = seen[-len(COMMIT_COMPLETE) :]
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
