"""One load driver process: ``python -m gateway.loadtest.driver_process``.

It reads its job from stdin, connects its target, reports ready, waits for the start time,
drives its share of the plan and reports as :mod:`gateway.loadtest.wire` describes. It runs
on uvloop where installed. Ctrl-C is the coordinator's to handle (it sends ``stop``), so the
driver ignores SIGINT; stray output goes to stderr so that stdout carries only messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

from gateway.configuration.settings import Settings, load_settings
from gateway.facade.gateway import Gateway
from gateway.loadtest.driver import OPERATIONS, LoadDriver
from gateway.loadtest.event_loop import fast_loop_factory
from gateway.loadtest.stores import DUAL_WRITE_SUFFIX, closing, enabled_sinks
from gateway.loadtest.targets import (
    DualWriteTarget,
    EmbeddedTarget,
    HttpTarget,
    WriteTarget,
    Written,
)
from gateway.loadtest.wire import (
    DriverJob,
    Tick,
    Writes,
    catalog_of,
    line,
    plan_of,
    sample_row,
    share_of,
)

FLUSH_SECONDS = 0.01
"""How often returned writes are passed on: sampled writes are timed from their return."""


class Channel:
    """The driver's side of the pipe: messages out, buffered writes flushed often."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.writes: Writes = {"placed": [], "partial": [], "samples": []}

    def send(self, kind: str, body: Any) -> None:
        """One message, at once."""
        self.stream.write(line(kind, body))
        self.stream.flush()

    def flush_writes(self) -> None:
        """Pass on the writes returned since the last flush, if any."""
        if any(self.writes.values()):
            self.send("writes", self.writes)
            self.writes = {"placed": [], "partial": [], "samples": []}


def tick_of(driver: LoadDriver) -> Tick:
    """The driver's second so far; its counters and histograms start again."""
    counts = driver.counts
    tick: Tick = {
        "offered": counts.interval_offered,
        "completed": counts.interval_completed,
        "errors": counts.interval_errors,
        "in_flight": driver.in_flight,
        "latency": {op: driver.latency[op].take_interval_latencies().encode() for op in OPERATIONS},
    }
    counts.interval_offered = counts.interval_completed = counts.interval_errors = 0
    return tick


@contextlib.asynccontextmanager
async def target_of(job: DriverJob, settings: Settings) -> AsyncIterator[WriteTarget]:
    """The job's target, connected, and closed on the way out."""
    plan = plan_of(job)
    if job["phase"] == "outbox" and plan.via == "http":
        assert plan.url is not None
        key = settings.api.key.get_secret_value() if settings.api.key else None
        secrets = settings.payments.webhook_secret
        secret = secrets[0].get_secret_value() if secrets else None
        connections = plan.concurrency or min(plan.max_in_flight, 256)
        target = HttpTarget(plan.url, key, share_of(job).split(connections), secret)
        try:
            yield target
        finally:
            await target.close()
        return
    async with await Gateway.connect(settings) as gateway:
        if job["phase"] == "outbox":
            yield EmbeddedTarget(gateway)
            return
        sinks = enabled_sinks(settings, DUAL_WRITE_SUFFIX)
        async with closing(sinks):
            for sink in sinks.values():
                await sink.start()
            yield DualWriteTarget(gateway, sinks)


async def drive(job: DriverJob, channel: Channel, commands: asyncio.StreamReader) -> None:
    """Run the job; every message goes to ``channel``."""
    settings = load_settings(job["config_path"])
    plan = plan_of(job)

    def sample(written: Written, returned_at: float) -> None:
        channel.writes["samples"].append(sample_row(written, returned_at))

    async with target_of(job, settings) as target:
        driver = LoadDriver(plan, target, catalog_of(job), sample, share_of(job))
        await target.warm()
        channel.send("ready", True)
        command = (await commands.readline()).decode().split()
        if command[:1] != ["start"]:
            return
        start = float(command[1])
        cpu_started = time.process_time()
        tasks = [
            asyncio.create_task(_stop_on_command(commands, driver.stop)),
            asyncio.create_task(_report(driver, channel, start)),
        ]
        try:
            await driver.run(start)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        _collect(driver, channel)
        channel.flush_writes()
        channel.send("tick", tick_of(driver))
        channel.send(
            "done",
            {
                "offered": dict(driver.counts.offered),
                "completed": dict(driver.counts.completed),
                "errors": dict(driver.counts.errors),
                "lives": dict(driver.counts.lives),
                "payment_outcomes": dict(driver.counts.payment_outcomes),
                "offering_seconds": driver.offering_seconds,
                "cpu_seconds": time.process_time() - cpu_started,
            },
        )


def _collect(driver: LoadDriver, channel: Channel) -> None:
    channel.writes["placed"].extend(driver.order_ids)
    channel.writes["partial"].extend(driver.partial_order_ids)
    driver.order_ids.clear()
    driver.partial_order_ids.clear()


async def _report(driver: LoadDriver, channel: Channel, start: float) -> None:
    """Flush returned writes every few milliseconds and a tick at every whole second."""
    next_tick = start + 1.0
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        _collect(driver, channel)
        channel.flush_writes()
        if time.monotonic() >= next_tick:
            next_tick += 1.0
            channel.send("tick", tick_of(driver))


async def _stop_on_command(commands: asyncio.StreamReader, stop: Callable[[], None]) -> None:
    while True:
        command = await commands.readline()
        if not command or command.strip() == b"stop":
            stop()
            return


async def _main(messages: IO[bytes]) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    job: DriverJob = json.loads(await commands.readline())
    await drive(job, Channel(messages), commands)


def main() -> None:
    """Entry point: messages on the real stdout, everything else printed goes to stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    messages = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
        runner.run(_main(messages))


if __name__ == "__main__":
    main()
