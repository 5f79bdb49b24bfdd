"""The relay process's liveness session, kept open and checked (see :mod:`gateway.relay.sessions`
for why a session tells a dead relay from a live one).

Every ``relay.session_check_interval_seconds`` (0.5 s by default) the process runs one
statement on its session: it releases the leases of the relays whose session ended, and lists
the live relays. When that list changed (a relay died, left or joined), the process refreshes
its view and its workers rebalance at once, instead of a third of a lease later: a killed
relay's partitions are delivered again by the survivors within about one interval. Cost: one
statement per interval per relay, over a connection held for the purpose (two statements/s
with the default, whatever the load).

If the session breaks while the process lives (a network blip, a PostgreSQL restart or
failover), the check that finds it broken opens and records a new one at once (see
:func:`~gateway.relay.sessions.reopen_at_once`); while that fails, the next checks try again,
with backoff. Meanwhile another relay may release its leases (its commits are then refused,
see ``advance_positions``, and its workers forget what they lost), and until it records its
new session its leases are kept only by its heartbeat. A restart ends every relay's session at
once: since a session is judged only against the run of the server it was recorded on, no
relay releases another's leases for it, each reconnects on its own backoff, and the leases
stay where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

from gateway.backoff import Backoff
from gateway.relay.errors import DATABASE_ERRORS
from gateway.relay.sessions import (
    RelaySession,
    SessionCheck,
    ends_session,
    membership_changed,
    reopen_at_once,
)

log = logging.getLogger("gateway.relay")


class LivenessSession:
    """Keeps one relay's liveness session open, and checks it every ``interval_seconds``."""

    def __init__(
        self,
        open_session: Callable[[], Awaitable[RelaySession]],
        *,
        interval_seconds: float,
        ttl_seconds: float,
        backoff: Backoff,
        known_live: Callable[[], Collection[str]],
        on_change: Callable[[SessionCheck], Awaitable[None]],
    ) -> None:
        self._open_session = open_session
        self._interval_seconds = interval_seconds
        self._ttl_seconds = ttl_seconds
        self._backoff = backoff
        self._known_live = known_live
        self._on_change = on_change
        self._session: RelaySession | None = None
        self.checks = 0
        """How many checks ran (each one statement, two after the session was re-recorded)."""

    @property
    def is_open(self) -> bool:
        """Whether a session is open (as far as this process knows)."""
        return self._session is not None

    async def open(self) -> None:
        """Open and record the session (raises a database error if PostgreSQL cannot be
        reached)."""
        if self._session is None:
            self._session = await self._open_session()

    async def check(self) -> None:
        """Check once: open the session if it is not, then look for dead relays; when the live
        relays changed, tell the process. A session whose connection broke is closed and opened
        again at once; after a statement's own failure it stays open."""
        was_open = self.is_open
        try:
            found = await self._check_once()
        except DATABASE_ERRORS as error:
            if not reopen_at_once(was_open, error):
                raise
            log.warning("liveness session's connection ended (%s), opening another", error)
            found = await self._check_once()
        self.checks += 1
        if found.reaped:
            log.warning("relays whose session ended, leases released: %s", sorted(found.reaped))
        if membership_changed(self._known_live(), found):
            await self._on_change(found)

    async def _check_once(self) -> SessionCheck:
        """Open the session if it is not, and check it; close it if its connection broke."""
        try:
            await self.open()
            assert self._session is not None
            return await self._session.check(self._ttl_seconds)
        except DATABASE_ERRORS as error:
            if ends_session(error):
                await self.close()
            raise

    async def run(self) -> None:
        """Check every interval, until cancelled; after a failure, back off."""
        failures = 0
        while True:
            delay = self._interval_seconds
            if failures:
                delay = max(delay, self._backoff.delay(failures))
            await asyncio.sleep(delay)
            try:
                await self.check()
            except DATABASE_ERRORS as error:
                failures += 1
                log.warning("liveness session lost, opening another: %s", error)
            else:
                if failures:
                    log.info("liveness session open again")
                failures = 0

    async def close(self) -> None:
        """End the session (other relays then release this relay's remaining leases)."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(*DATABASE_ERRORS):
                await session.close()
