"""The API's gateway, connected in the background: the server starts, and answers its
probes, while PostgreSQL (in sharded mode, the catalog) cannot be reached, and serves once it
answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.backoff import Backoff
from gateway.configuration.secrets import redact_url
from gateway.configuration.settings import Settings
from gateway.facade.gateway import Gateway
from gateway.postgres.waiting import describe, is_reason_to_wait, wait_for_postgres

log = logging.getLogger("gateway.api")


class GatewayConnection:
    """The gateway of ``settings`` once it has connected (``gateway``), ``None`` until then.

    ``start`` tries once; if PostgreSQL cannot be reached for now, it keeps trying in the
    background with the relay's backoff (``relay.backoff_*``), each failure logged with the URL
    redacted. ``close`` stops the trying at once and closes the gateway, if any.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._backoff = Backoff(
            settings.relay.backoff_initial_seconds, settings.relay.backoff_max_seconds
        )
        self._url = settings.postgres.url.get_secret_value()
        self._stopping = asyncio.Event()
        self._trying: asyncio.Task[None] | None = None
        self.gateway: Gateway | None = None
        """The connected gateway; ``None`` while PostgreSQL has not answered yet."""

    async def start(self) -> None:
        """Connect, or start trying in the background if PostgreSQL cannot be reached for now.

        An error that waiting does not mend (a wrong password, a database that does not
        exist) is raised: the API does not start.
        """
        try:
            self.gateway = await Gateway.connect(self._settings)
        except Exception as error:
            if not is_reason_to_wait(error):
                raise
            log.warning(
                "waiting for PostgreSQL at %s: %s; the API answers 503 until it answers",
                redact_url(self._url),
                describe(error),
            )
            self._trying = asyncio.create_task(self._keep_trying())

    async def close(self) -> None:
        """Stop trying (abandoning an attempt under way) and close the gateway."""
        self._stopping.set()
        if self._trying is not None:
            self._trying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trying
        if self.gateway is not None:
            await self.gateway.close()
            self.gateway = None

    async def _keep_trying(self) -> None:
        refusals = 0
        while not self._stopping.is_set():
            try:
                self.gateway = await wait_for_postgres(
                    self._connect, url=self._url, backoff=self._backoff, stopping=self._stopping
                )
                return
            except Exception as error:
                # The server answers now but refuses the API (its role or database not made
                # yet, say): the process keeps serving its probes and tries again.
                refusals += 1
                delay = self._backoff.delay(refusals)
                log.error(
                    "PostgreSQL at %s refused the API (%s), trying again in %.1f s",
                    redact_url(self._url),
                    describe(error),
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _connect(self) -> Gateway:
        return await Gateway.connect(self._settings)
