"""scripts/services.sh on real servers of its own (a PostgreSQL primary and its streaming
replica, in a folder and on ports of this test): ``up`` says once that the primary runs, and
names the servers it started in this call, so that its caller can stop exactly those."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import SERVICES_SCRIPT, unused_port

SERVICES = ["postgres", "postgres-replica"]


@pytest.fixture
def services_env() -> Iterator[dict[str, str]]:
    """The environment of a services.sh whose servers live in a folder of their own."""
    # PostgreSQL runs as its own user, who must be able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="fanout-services-"))
    folder.chmod(0o755)
    env = {
        **os.environ,
        "FANOUT_SERVICES_DIR": str(folder),
        "FANOUT_SERVICES_POSTGRES_PORT": str(unused_port()),
        "FANOUT_SERVICES_POSTGRES_REPLICA_PORT": str(unused_port()),
        "FANOUT_SERVICES_STARTED_FILE": str(folder / "started"),
    }
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SERVICES_SCRIPT), "down", *SERVICES], env=env, check=True)
        shutil.rmtree(folder)


def up(env: dict[str, str]) -> tuple[list[str], str]:
    """The services one ``up`` started, and what it said on stderr."""
    started = Path(env["FANOUT_SERVICES_STARTED_FILE"])
    started.write_text("")
    result = subprocess.run(
        ["bash", str(SERVICES_SCRIPT), "up", *SERVICES],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return started.read_text().split(), result.stderr


def test_up_says_once_that_postgres_runs_and_names_what_it_started(
    services_env: dict[str, str],
) -> None:
    started, said = up(services_env)
    assert started == ["postgres", "postgres-replica"]
    assert "postgres already running" not in said

    started, said = up(services_env)
    assert started == []
    assert said.count("postgres already running") == 1, said
