"""``fanout serve`` with several worker processes on one port: every request counted once in
``/metrics`` whichever worker answered it, and all of them stopped by one SIGTERM."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from support.api_process import api_server, write_config
from support.eventually import eventually

REQUESTS = 120


def worker_pids(supervisor: int) -> set[int]:
    """The worker processes the server started (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def alive(pid: int) -> bool:
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )


def answered(metrics: str, route: str, status: str) -> float:
    """Requests of ``route`` answered with ``status``, from the Prometheus text."""
    total = 0.0
    for line in metrics.splitlines():
        if (
            line.startswith("fanout_http_requests_total{")
            and f'route="{route}"' in line
            and f'status="{status}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_workers_share_the_port_count_every_request_and_stop_together(
    migrated_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        {
            "postgres": {"url": migrated_url},
            "api": {"workers": 2},
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    async with api_server(config) as server:
        supervisor = server.server.process.pid
        await eventually(lambda: len(worker_pids(supervisor)) == 2, within=30)
        workers = worker_pids(supervisor)
        # A new connection per request, so that both workers accept some.
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

            async def serving() -> bool:
                try:
                    await http.get("/healthz", headers={"Connection": "close"})
                except httpx.TransportError:
                    return False
                return True

            await eventually(serving, within=60)  # the workers listen once they have started
            for _ in range(REQUESTS):
                response = await http.get(
                    f"/orders/{uuid.uuid4()}", headers={"Connection": "close"}
                )
                assert response.status_code == 404
            for _ in range(6):  # whichever worker answers, it reports every worker's count
                metrics = (await http.get("/metrics", headers={"Connection": "close"})).text
                assert answered(metrics, "/orders/{order_id}", "404") == REQUESTS
        exit_code = await server.server.terminate(within=60)
    assert exit_code == 0, server.server.log_text
    assert not any(alive(pid) for pid in workers)
    assert "Traceback" not in server.server.log_text
