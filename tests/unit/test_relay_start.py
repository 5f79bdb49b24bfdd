"""A relay whose first calls to PostgreSQL fail as a server restarting fails them waits and
starts, rather than exiting."""

from __future__ import annotations

import asyncio

from adapters.memory import MemorySink
from gateway.relay import Relay
from tests import relay_settings
from tests.unit.relay_fakes import InMemoryRelayStorage


class ResettingAtFirst(InMemoryRelayStorage):
    """Storage whose first calls fail as a PostgreSQL restarting fails them."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def register_sink(self, sink: str, *, from_beginning: bool) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError(104, "Connection reset by peer")
        await super().register_sink(sink, from_beginning=from_beginning)


async def test_a_relay_whose_start_meets_a_reset_waits_then_delivers() -> None:
    storage = ResettingAtFirst(failures=3)
    storage.publish(12)
    sink = MemorySink()
    settings = relay_settings.FAST.model_copy(
        update={"poll_interval_seconds": 0.01, "backoff_initial_seconds": 0.001}
    )
    relay = Relay(None, None, [sink], settings, storage=storage)

    await asyncio.wait_for(relay.run(until_idle=True), 30)

    assert storage.failures == 0
    assert storage.delivered[sink.name] == 12
