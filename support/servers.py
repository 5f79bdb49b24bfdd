"""Where the test suite finds its servers.

First the ``FANOUT_TEST_<SERVICE>_URL`` environment variables; otherwise the suite starts the
servers itself with ``scripts/services.sh up`` (local binaries, installed when missing).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"


def server_url(service: str) -> str:
    """The URL of a running server of ``service``, starting one if none is configured."""
    variable = f"FANOUT_TEST_{service.upper().replace('-', '_')}_URL"
    url = os.environ.get(variable)
    if url:
        return url
    result = subprocess.run(
        ["bash", str(SERVICES_SCRIPT), "up", service],
        check=True,
        capture_output=True,
        text=True,
    )
    # A service may print more than its URL (postgres-ha: its Patroni REST APIs); all of it is
    # kept for the helpers that need it.
    for line in result.stdout.splitlines():
        name, _, value = line.partition("=")
        if name.startswith("FANOUT_TEST_"):
            os.environ[name] = value
    if os.environ.get(variable):
        return os.environ[variable]
    raise RuntimeError(f"{SERVICES_SCRIPT} up {service} printed no {variable}")


def managed(service: str) -> bool:
    """Whether ``scripts/services.sh`` runs this service (so a test may stop and start it)."""
    result = subprocess.run(
        ["bash", str(SERVICES_SCRIPT), "status", service], capture_output=True, text=True
    )
    return result.returncode == 0 and ": running" in result.stdout


def stop_server(service: str) -> None:
    """Stop the real server of ``service`` (one ``scripts/services.sh`` started)."""
    subprocess.run(["bash", str(SERVICES_SCRIPT), "down", service], check=True, capture_output=True)


def start_server(service: str) -> None:
    """Start the real server of ``service`` again and wait until it answers."""
    subprocess.run(["bash", str(SERVICES_SCRIPT), "up", service], check=True, capture_output=True)


@contextmanager
def paused_server(service: str) -> Iterator[None]:
    """Freeze the real server of ``service`` (SIGSTOP) for the block, then let it run again:
    its connections stay open and take requests it answers only once resumed."""
    services_dir = Path(os.environ.get("FANOUT_SERVICES_DIR", ROOT / ".services"))
    pid = int((services_dir / service / f"{service}.pid").read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
