"""``fanout relay`` as a real process, started while PostgreSQL resets every connection (as
one restarting does) and cut off again mid-run: it waits, says so, and delivers once
PostgreSQL answers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from gateway.configuration.secrets import redact_url
from support.eventually import eventually
from tests.acceptance.postgres_proxy import ResettingProxy
from tests.acceptance.relay_support import World


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[ResettingProxy]:
    """A proxy to the test's database that resets every connection until told to forward."""
    resetting = ResettingProxy(world.settings.postgres.url.get_secret_value())
    await resetting.start()
    try:
        yield resetting
    finally:
        await resetting.close()


def relay_config(url: str, directory: Path) -> tuple[Path, Path]:
    """A config file relaying to a journaling memory sink; it and the journal's path."""
    journal = directory / "journal.jsonl"
    config = {
        "postgres": {"url": url},
        "relay": {
            "batch_size": 100,
            "linger_ms": 0,
            "poll_interval_seconds": 0.05,
            "lease_ttl_seconds": 1.5,
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 0.5,
        },
        "sinks": {"memory": {"type": "memory", "journal_path": str(journal)}},
        "logging": {"level": "WARNING"},
    }
    path = directory / "relay.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, journal


def delivered(journal: Path) -> set[str]:
    """The ids of the events in the journal's complete lines."""
    if not journal.exists():
        return set()
    complete, _, _ = journal.read_text().rpartition("\n")
    return {json.loads(line)["event_id"] for line in complete.splitlines() if line.strip()}


class RelayProcess:
    """``fanout relay`` in a subprocess, its output in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(config), "relay"],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        """What the process has written so far."""
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """True while the process runs; fails the test, with its output, once it exited."""
        code = self.process.poll()
        assert code is None, f"the relay exited with {code}:\n{self.output()[-3000:]}"
        return True

    async def stop(self) -> int:
        """SIGTERM, and its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(asyncio.to_thread(self.process.wait), 60)


async def test_a_relay_started_while_postgres_resets_connections_waits_then_delivers(
    world: World, proxy: ResettingProxy, tmp_path: Path
) -> None:
    await world.place_orders(10)
    first_events = await world.order_event_ids()
    config, journal = relay_config(proxy.url, tmp_path)

    relay = RelayProcess(config, tmp_path / "relay.log")
    try:
        # Every connection it makes is reset: it waits and tries again, without exiting.
        await eventually(lambda: relay.alive() and proxy.resets >= 3, within=120)
        assert "waiting for PostgreSQL" in relay.output()
        assert f"at {redact_url(proxy.url)}" in relay.output()

        proxy.forwarding = True
        await eventually(lambda: relay.alive() and delivered(journal) >= first_events, within=120)

        # PostgreSQL goes away mid-run: open sessions reset, new ones too.
        proxy.forwarding = False
        resets_before = proxy.resets
        proxy.reset_open_connections()
        await world.place_orders(10)
        await eventually(lambda: relay.alive() and proxy.resets >= resets_before + 3, within=120)

        proxy.forwarding = True
        every_event = await world.order_event_ids()
        await eventually(lambda: relay.alive() and delivered(journal) >= every_event, within=120)
    finally:
        code = await relay.stop()

    assert code == 0, relay.output()[-3000:]
    password = world.settings.postgres.url.get_secret_value().split("@")[0].rsplit(":", 1)[1]
    assert f":{password}@" not in relay.output()


async def test_a_relay_refused_by_postgres_exits_with_the_error_not_waiting(
    world: World, tmp_path: Path
) -> None:
    """A wrong password is not mended by waiting: exit 1 at once, password hidden."""
    parts = urlsplit(world.settings.postgres.url.get_secret_value())
    wrong = f"{parts.username}:Wr0ngSecret@{parts.hostname}:{parts.port}"
    config, _ = relay_config(urlunsplit(parts._replace(netloc=wrong)), tmp_path)

    relay = RelayProcess(config, tmp_path / "relay.log")
    try:
        code = await asyncio.wait_for(asyncio.to_thread(relay.process.wait), 60)
    finally:
        await relay.stop()

    assert code == 1, relay.output()
    assert "error: cannot connect to PostgreSQL" in relay.output()
    assert "password authentication failed" in relay.output()
    assert "waiting for PostgreSQL" not in relay.output()
    assert "Wr0ngSecret" not in relay.output()
