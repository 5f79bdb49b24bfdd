"""Stopping a store's real server in the middle of a run, and starting it again.

By default the servers are the ones ``scripts/services.sh`` runs on this machine; other
setups (docker compose, a remote store) give their own stop and start commands.
"""

from __future__ import annotations

import asyncio
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.configuration.settings import SinkSettings
from gateway.errors import GatewayError

SERVICES_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


@dataclass
class FaultRecord:
    """When the store was stopped and started, in seconds since the phase began."""

    sink: str
    stopped_at: float | None = None
    started_at: float | None = None


class ServerFault:
    """Runs the stop and start commands of one store's server."""

    def __init__(
        self, sink: str, settings: SinkSettings, stop: str | None, start: str | None
    ) -> None:
        self.sink = sink
        service = settings.type
        if (stop is None or start is None) and not SERVICES_SCRIPT.exists():
            raise GatewayError(
                "--fault needs --fault-stop-command and --fault-start-command here "
                f"({SERVICES_SCRIPT} is not available)"
            )
        self.stop_command = (
            shlex.split(stop) if stop else ["bash", str(SERVICES_SCRIPT), "down", service]
        )
        self.start_command = (
            shlex.split(start) if start else ["bash", str(SERVICES_SCRIPT), "up", service]
        )
        self.stopped = False

    async def stop(self) -> None:
        """Stop the server; raise if the command fails."""
        await _run(self.stop_command)
        self.stopped = True

    async def start(self) -> None:
        """Start the server and wait until it answers (the command waits)."""
        await _run(self.start_command)
        self.stopped = False

    async def inject(self, at: float, duration: float, record: FaultRecord, origin: float) -> None:
        """Stop the server ``at`` seconds after ``origin`` and start it ``duration`` later."""
        await asyncio.sleep(max(0.0, origin + at - time.monotonic()))
        await self.stop()
        record.stopped_at = time.monotonic() - origin
        await asyncio.sleep(duration)
        await self.start()
        record.started_at = time.monotonic() - origin


async def _run(command: list[str]) -> None:
    # The command's errors go to a file, not a pipe: a start command leaves a server running,
    # and a server that inherited the pipe would hold it open, so reading it to its end would
    # wait for the server to stop (under uvloop the pipe is inherited whatever the server does
    # with its own standard streams).
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=errors
        )
        await process.wait()
        errors.seek(0)
        stderr = errors.read()
    if process.returncode != 0:
        detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise GatewayError(f"{shlex.join(command)} failed ({process.returncode}): {detail[0]}")
