"""``fanout serve`` and ``fanout relay`` as real subprocesses, with their logs kept."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def write_config(directory: Path, config: dict[str, Any], name: str = "gateway.yaml") -> Path:
    """Write a gateway configuration file and return its path."""
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def clean_environment() -> dict[str, str]:
    """The environment without the developer's FANOUT_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}


@dataclass
class Process:
    """A running ``fanout`` subprocess whose stderr is read continuously."""

    process: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def log_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        return "".join(self.log)

    async def terminate(self, within: float = 60) -> int:
        """Send SIGTERM and return the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), within)

    async def kill(self) -> None:
        """SIGKILL, for cleanup after a failed test."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def start_fanout(
    config: Path, *args: str, stdout: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """Start ``python -m gateway --config CONFIG ARGS...`` with stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(config),
        *args,
        env=clean_environment(),
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


async def spawn(config: Path, *args: str) -> Process:
    """Start ``fanout ARGS...`` and keep reading its stderr."""
    process = await start_fanout(config, *args)
    running = Process(process)

    async def drain() -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            running.log.append(line.decode(errors="replace"))

    running.reader = asyncio.create_task(drain())
    return running


@dataclass
class ApiServer:
    """A ``fanout serve`` process listening on ``url``."""

    url: str
    server: Process


async def _listening_port(server: Process, within: float) -> int:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        match = LISTENING.search(server.log_text)
        if match:
            return int(match.group(1))
        if server.process.returncode is not None:
            break
        await asyncio.sleep(0.02)
    raise AssertionError(f"fanout serve did not start:\n{server.log_text}")


@asynccontextmanager
async def api_server(config: Path) -> AsyncIterator[ApiServer]:
    """``fanout serve`` on a free port of 127.0.0.1, stopped with SIGTERM afterwards."""
    server = await spawn(config, "serve", "--port", "0")
    try:
        port = await _listening_port(server, within=60)
        yield ApiServer(f"http://127.0.0.1:{port}", server)
    finally:
        with suppress(TimeoutError):
            await server.terminate(within=30)
        await server.kill()
