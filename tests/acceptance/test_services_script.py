"""scripts/services.sh on real servers of its own (a PostgreSQL primary and its streaming
replica, in a folder and on ports of this test): ``up`` says once that the primary runs, and
names the servers it started in this call, so that its caller can stop exactly those. And
``up postgres-ha`` over the running cluster: it starts nothing and says where the cluster is.
And ``up`` over a server stopped with SIGSTOP (a Redis of its own): it lets it run again."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from support.ha_cluster import HaCluster
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


async def test_up_of_a_running_postgres_ha_starts_nothing_and_prints_both_addresses() -> None:
    cluster = HaCluster.from_environment()
    async with cluster.exclusive():
        await cluster.wait_for_streaming_replicas(2, within=120)
        with tempfile.NamedTemporaryFile("r") as started_file:
            env = {**os.environ, "FANOUT_SERVICES_STARTED_FILE": started_file.name}
            env.pop("FANOUT_SERVICES_POSTGRES_HA_MODE", None)
            began = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                "bash",
                str(SERVICES_SCRIPT),
                "up",
                "postgres-ha",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 120)
            took = time.monotonic() - began
            started = started_file.read()

    said = err.decode()
    assert process.returncode == 0, said
    assert started == ""
    assert took < 10
    for name in cluster.nodes:
        assert f"node {name} already running" in said
    printed = dict(line.split("=", 1) for line in out.decode().splitlines())
    assert printed["FANOUT_TEST_POSTGRES_HA_URL"] == cluster.url
    assert printed["FANOUT_TEST_POSTGRES_HA_PATRONI"].split(",") == [
        node.rest_url for node in cluster.nodes.values()
    ]


def test_up_refuses_an_unknown_postgres_ha_mode_by_its_setting() -> None:
    env = {**os.environ, "FANOUT_SERVICES_POSTGRES_HA_MODE": "quorum"}
    result = subprocess.run(
        ["bash", str(SERVICES_SCRIPT), "up", "postgres-ha"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "FANOUT_SERVICES_POSTGRES_HA_MODE must be async, sync or strict, not 'quorum'" in (
        result.stderr
    )
    assert result.stdout == ""


@pytest.fixture
def redis_env() -> Iterator[dict[str, str]]:
    """The environment of a services.sh whose Redis, running, lives in a folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="fanout-services-"))
    env = {
        **os.environ,
        "FANOUT_SERVICES_DIR": str(folder),
        "FANOUT_SERVICES_REDIS_PORT": str(unused_port()),
    }
    try:
        subprocess.run(
            ["bash", str(SERVICES_SCRIPT), "up", "redis"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield env
    finally:
        subprocess.run(["bash", str(SERVICES_SCRIPT), "down", "redis"], env=env, check=True)
        shutil.rmtree(folder)


def process_state(pid: int) -> str:
    """The state letter of a process (R, S, T for stopped, Z...), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


def test_up_lets_a_server_stopped_with_sigstop_run_again(redis_env: dict[str, str]) -> None:
    port = int(redis_env["FANOUT_SERVICES_REDIS_PORT"])
    pidfile = Path(redis_env["FANOUT_SERVICES_DIR"]) / "redis" / "redis.pid"
    pid = int(pidfile.read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10
        while process_state(pid) != "T":
            assert time.monotonic() < deadline, "redis did not stop"
            time.sleep(0.05)
        with (
            redis.Redis(port=port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)) as client,
            pytest.raises(redis.TimeoutError),
        ):
            client.ping()

        result = subprocess.run(
            ["bash", str(SERVICES_SCRIPT), "up", "redis"],
            env=redis_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert result.returncode == 0, result.stderr
        said = result.stderr.splitlines()
        resumed = (
            f"[services] redis/redis.pid: process {pid} was stopped (SIGSTOP); sending it SIGCONT"
        )
        assert said.count(resumed) == 1, result.stderr
        assert f"[services] redis already running on 127.0.0.1:{port}" in said
        assert process_state(pid) != "T"
        with redis.Redis(port=port, socket_timeout=5) as client:
            assert client.ping()
    finally:
        os.kill(pid, signal.SIGCONT)
