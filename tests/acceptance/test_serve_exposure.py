"""``fanout serve`` beyond loopback: refused without a key, served when the configuration
says explicitly that it runs without authentication."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from support.api_process import spawn, write_config
from support.eventually import eventually

LISTENING_EVERYWHERE = re.compile(r"Uvicorn running on http://0\.0\.0\.0:(\d+)")


async def test_the_explicit_opt_out_serves_on_every_address(
    migrated_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        {"postgres": {"url": migrated_url}, "api": {"allow_unauthenticated": True}},
    )
    server = await spawn(config, "serve", "--host", "0.0.0.0", "--port", "0")
    try:

        def listening() -> bool:
            assert server.process.returncode is None, server.log_text
            return LISTENING_EVERYWHERE.search(server.log_text) is not None

        await eventually(listening, within=60)
        match = LISTENING_EVERYWHERE.search(server.log_text)
        assert match is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{match[1]}") as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
    finally:
        await server.terminate(within=30)
        await server.kill()


async def test_without_a_key_or_the_opt_out_it_exits_naming_the_key(
    migrated_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"postgres": {"url": migrated_url}})
    server = await spawn(config, "serve", "--host", "0.0.0.0", "--port", "0")
    try:
        code = await asyncio.wait_for(server.process.wait(), 60)
    finally:
        await server.kill()
    assert server.reader is not None
    await server.reader
    assert code == 2
    assert "api.key" in server.log_text and str(config) in server.log_text
    assert "Uvicorn running" not in server.log_text
