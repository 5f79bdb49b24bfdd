"""A relay whose ``run`` is cancelled (``asyncio.wait_for`` running out, a task group ending)
leaves none of its tasks running: its sink workers would go on using storage and pools their
owner closes next."""

from __future__ import annotations

import asyncio
import contextlib

from adapters.memory import MemorySink
from gateway.relay import Relay
from tests import relay_settings
from tests.unit.relay_fakes import InMemoryRelayStorage


def _running_relay_tasks() -> list[str]:
    return sorted(
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith("relay-") and not task.done()
    )


async def test_a_cancelled_run_ends_its_workers_and_background_tasks() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(5)
    sink = MemorySink()
    relay = Relay(None, None, [sink], relay_settings.FAST, storage=storage)
    running = asyncio.create_task(relay.run())
    await asyncio.wait_for(relay.ready.wait(), 30)
    assert f"relay-{sink.name}" in _running_relay_tasks()

    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running

    assert _running_relay_tasks() == []
