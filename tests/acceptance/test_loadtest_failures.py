"""``fanout loadtest`` whose operations fail: the run fails and says why, however clean the
stores are (they hold nothing to drift from)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from support.api_process import api_server, start_fanout, write_config
from tests.acceptance.relay_support import World


def config(world: World, path: Path, api: dict[str, str]) -> Path:
    path.mkdir()
    return write_config(
        path,
        {
            "postgres": {"url": world.settings.postgres.url.get_secret_value()},
            "api": api,
            "sinks": {},
        },
    )


async def test_a_run_whose_requests_the_api_refuses_for_want_of_a_key_fails_and_says_why(
    world: World, tmp_path: Path
) -> None:
    served = config(world, tmp_path / "served", {"key": "loadtest-api-key-0123456789"})
    keyless = config(world, tmp_path / "keyless", {})
    report_path = tmp_path / "report.json"

    async with api_server(served) as api:
        process = await start_fanout(
            keyless,
            "loadtest",
            "--via", "http", "--url", api.url, "--concurrency", "2", "--orders", "40",
            "--relays", "0", "--out", str(report_path),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)

    said = stdout.decode() + stderr.decode()
    assert process.returncode == 1, said
    assert "the API wants a key; set api.key or FANOUT_API_KEY" in said
    assert "no drift" in said  # nothing was written, so nothing drifted
    report = json.loads(report_path.read_text())
    assert report["result"] == "failed"
    assert report["failure"].startswith("40 of 40 operations failed (100.0 %")
