"""``fanout doctor`` and ``/readyz`` (with the key) describe a replica that does not answer
without the password its URL carries, whatever the URL's form."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx

from support.api_process import api_server, clean_environment, write_config
from support.servers import unused_port

API_KEY = "reports-api-key-0123456789"
SECRET = "Replica-Sekret-77"


def replica_urls() -> list[str]:
    """Replicas that do not answer, each carrying the secret in another form."""
    return [
        f"postgresql://fanout@127.0.0.1:{unused_port()}/orders?password={SECRET}",
        f"postgresql://fanout:{SECRET}@127.0.0.1:{unused_port()},127.0.0.1:{unused_port()}/orders",
    ]


async def test_doctor_shows_the_replicas_without_their_password(
    migrated_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"postgres": {"url": migrated_url, "replicas": replica_urls()}})
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "--config", str(config), "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environment(),
    )
    assert result.returncode == 1, result.stderr  # the replicas are down
    replicas = json.loads(result.stdout)["replication"]["replicas"]
    # The URL naming two hosts is a replica for each host.
    assert len(replicas) == 3 and all("127.0.0.1" in replica["replica"] for replica in replicas)
    assert SECRET not in result.stdout + result.stderr


async def test_readyz_shows_the_replicas_without_their_password(
    migrated_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        {
            "postgres": {"url": migrated_url, "replicas": replica_urls()},
            "api": {"key": API_KEY},
        },
    )
    async with api_server(config) as server:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            ready = await http.get("/readyz")
        log = server.server.log_text
    assert ready.status_code == 200, ready.text
    assert len(ready.json()["replicas"]) == 3  # one for each host
    assert SECRET not in ready.text + log
