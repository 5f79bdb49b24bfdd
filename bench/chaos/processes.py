"""The processes a chaos run kills and restarts: ``fanout`` subprocesses and the servers of
``scripts/services.sh``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.loadtest.faults import SERVICES_SCRIPT

log = logging.getLogger("bench.chaos")


class FanoutProcess:
    """A ``fanout`` subprocess (``serve`` or ``relay``) that can be killed and started again."""

    def __init__(self, name: str, config: Path, args: list[str], logs: Path) -> None:
        self.name = name
        self.config = config
        self.args = args
        self.log_path = logs / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.held_down = False
        """Whether a fault killed the process and is to start it again."""

    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended; ``None`` while it runs or before it started."""
        return None if self.process is None else self.process.returncode

    def log_tail(self, lines: int) -> str:
        """The last ``lines`` lines of the process's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def start(self) -> None:
        """Start the process, its output appended to its log file."""
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "--config",
                str(self.config),
                *self.args,
                stdout=log,
                stderr=log,
                env=fanout_environment(),
            )
        finally:
            log.close()

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def kill_and_restart(self, after_seconds: float) -> None:
        """SIGKILL, then start again ``after_seconds`` later; meanwhile its end is the fault's."""
        self.held_down = True
        try:
            await self.kill()
            await asyncio.sleep(after_seconds)
            await self.start()
        finally:
            self.held_down = False

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within a minute."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            await self.kill()


async def services(action: str, service: str, *, tries: int = 5) -> None:
    """``scripts/services.sh ACTION SERVICE``, again while it fails (a server that starts
    slowly on a loaded machine: the script waits, then gives up); raises after ``tries``."""
    for attempt in range(1, tries + 1):
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(SERVICES_SCRIPT),
            action,
            service,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode == 0:
            return
        detail = stderr.decode(errors="replace")[-500:]
        log.warning("services.sh %s %s failed (try %d): %s", action, service, attempt, detail)
        await asyncio.sleep(2.0 * attempt)
    raise RuntimeError(f"services.sh {action} {service} failed {tries} times: {detail}")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fanout_environment() -> dict[str, str]:
    """The environment of a ``fanout`` subprocess: this one's, but for the ``FANOUT_``
    variables (the configuration file decides) and ``COLUMNS`` (its output unwrapped)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_") and k != "COLUMNS"}


@dataclass(frozen=True)
class CommandResult:
    """A finished command: its exit code (``None``: killed at its timeout) and output."""

    returncode: int | None
    stdout: str
    stderr: str


async def run_fanout(config: Path, args: list[str], timeout_seconds: float) -> CommandResult:
    """``fanout --config CONFIG ARGS...`` to its end, or killed after ``timeout_seconds``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(config),
        *args,
        env=fanout_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        killed = f"\nkilled after {timeout_seconds:g} s"
        return CommandResult(
            None, stdout.decode(errors="replace"), stderr.decode(errors="replace") + killed
        )
    except BaseException:  # cancelled: the command must not outlive the run
        if process.returncode is None:
            process.kill()
        raise
    return CommandResult(
        process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
    )
