"""The coordinator's side of the driver processes: start them, start them together, and add
up what they report into one set of counts and histograms.

The coordinator (the ``fanout loadtest`` process) seeds, samples the relay's gauges, watches
visibility and checks for drift; the load itself comes from these processes, so neither slows
the other. Histograms travel encoded and are merged exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.errors import GatewayError
from gateway.loadtest.driver import OPERATIONS, DriverCounts
from gateway.loadtest.stats import Recorder
from gateway.loadtest.targets import Written
from gateway.loadtest.wire import Done, DriverJob, Tick, Writes, written_of

START_DELAY_SECONDS = 0.05
"""Between the start command and the start time, so that every driver gets it in time."""
READY_TIMEOUT_SECONDS = 120.0
Expect = Callable[[Written, float], None]


@dataclass
class _Driver:
    process: asyncio.subprocess.Process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    done: Done | None = None
    stderr: bytearray = field(default_factory=bytearray)


def _ended_early(driver: _Driver) -> GatewayError:
    return GatewayError(
        f"a load driver process ended (exit code {driver.process.returncode}) "
        f"before it finished: {driver.stderr.decode(errors='replace')[-2000:]}"
    )


class DriverProcesses:
    """Driver processes running one phase, seen as one driver."""

    def __init__(self, jobs: list[DriverJob], expect: Expect | None) -> None:
        self.jobs = jobs
        self.expect = expect
        self.counts = DriverCounts()
        self.latency = {name: Recorder() for name in OPERATIONS}
        self.order_ids: list[str] = []
        self.partial_order_ids: list[str] = []
        self.offering_seconds = 0.0
        self.cpu_seconds = 0.0
        self.start: float | None = None
        self.started = asyncio.Event()
        self._drivers: list[_Driver] = []
        self._stopped = False

    @property
    def in_flight(self) -> int:
        """Operations started and not finished, as of each driver's last second."""
        return sum(driver.in_flight for driver in self._drivers)

    def stop(self) -> None:
        """Ask every driver to start no more operations."""
        self._stopped = True
        for driver in self._drivers:
            with contextlib.suppress(Exception):
                assert driver.process.stdin is not None
                driver.process.stdin.write(b"stop\n")

    async def run(self) -> None:
        """Start the drivers, start them together, and wait for every one's totals."""
        try:
            for job in self.jobs:
                self._drivers.append(await self._spawn(job))
            readers = [asyncio.create_task(self._read(driver)) for driver in self._drivers]
            errors = [asyncio.create_task(self._read_errors(d)) for d in self._drivers]
            await self._wait_ready(readers, errors)
            self.start = time.monotonic() + START_DELAY_SECONDS
            for driver in self._drivers:
                assert driver.process.stdin is not None
                driver.process.stdin.write(f"start {self.start!r}\n".encode())
            if self._stopped:
                self.stop()
            self.started.set()
            await asyncio.gather(*readers)
            await asyncio.gather(*errors)
            for driver in self._drivers:
                await driver.process.wait()
                if driver.done is None:
                    raise _ended_early(driver)
        finally:
            for driver in self._drivers:
                if driver.process.returncode is None:
                    driver.process.kill()
                    await driver.process.wait()
        self.offering_seconds = max(d.done["offering_seconds"] for d in self._drivers if d.done)
        self.cpu_seconds = sum(d.done["cpu_seconds"] for d in self._drivers if d.done)

    async def _spawn(self, job: DriverJob) -> _Driver:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.loadtest.driver_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(job).encode() + b"\n")
        return _Driver(process)

    async def _wait_ready(
        self, readers: list[asyncio.Task[None]], errors: list[asyncio.Task[None]]
    ) -> None:
        """Until every driver is ready; a driver that ends first ends the run, with its error."""

        async def all_ready() -> None:
            for driver in self._drivers:
                await driver.ready.wait()

        ready = asyncio.create_task(all_ready())
        try:
            done, _ = await asyncio.wait(
                [ready, *readers],
                timeout=READY_TIMEOUT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if ready in done:
            return
        if not done:
            raise GatewayError("the load driver processes were not ready within 120 s")
        for driver, reader, error in zip(self._drivers, readers, errors, strict=True):
            if reader in done:
                reader.result()  # a message it could not read ends the run with that error
                await driver.process.wait()
                await error
                raise _ended_early(driver)

    async def _read(self, driver: _Driver) -> None:
        stdout = driver.process.stdout
        assert stdout is not None
        while raw := await stdout.readline():
            message = json.loads(raw)
            if "writes" in message:
                self._add_writes(message["writes"])
            elif "tick" in message:
                self._add_tick(driver, message["tick"])
            elif "ready" in message:
                driver.ready.set()
            elif "done" in message:
                driver.done = message["done"]
                self._add_done(message["done"])

    async def _read_errors(self, driver: _Driver) -> None:
        stderr = driver.process.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            driver.stderr.extend(chunk)
            del driver.stderr[:-8192]

    def _add_writes(self, writes: Writes) -> None:
        self.order_ids.extend(writes["placed"])
        self.partial_order_ids.extend(writes["partial"])
        if self.expect is not None:
            for row in writes["samples"]:
                self.expect(*written_of(row))

    def _add_tick(self, driver: _Driver, tick: Tick) -> None:
        self.counts.interval_offered += tick["offered"]
        self.counts.interval_completed += tick["completed"]
        self.counts.interval_errors += tick["errors"]
        driver.in_flight = tick["in_flight"]
        for op, encoded in tick["latency"].items():
            self.latency[op].add(encoded)

    def _add_done(self, done: Done) -> None:
        self.counts.offered.update(Counter(done["offered"]))
        self.counts.completed.update(Counter(done["completed"]))
        self.counts.errors.update(Counter(done["errors"]))
        self.counts.lives.update(Counter(done["lives"]))
        self.counts.payment_outcomes.update(Counter(done["payment_outcomes"]))
