"""scripts/compose-check.sh builds a stand-in for every image the stack uses, under the name
Docker would resolve it to, so that docker-compose finds each one without a registry."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compose-check.sh"


def in_script(command: str) -> list[str]:
    """The lines ``command`` prints in a shell that sourced the script."""
    result = subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; {command}'],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return result.stdout.split()


@pytest.mark.parametrize(
    ("name", "qualified"),
    [
        ("postgres:16", "docker.io/library/postgres:16"),
        ("apache/kafka:4.1.1", "docker.io/apache/kafka:4.1.1"),
        (
            "docker.elastic.co/elasticsearch/elasticsearch:8.19.7",
            "docker.elastic.co/elasticsearch/elasticsearch:8.19.7",
        ),
        ("fanout-check/jre:17", "localhost/fanout-check/jre:17"),
    ],
)
def test_names_are_qualified_as_docker_resolves_them(name: str, qualified: str) -> None:
    assert in_script(f"qualify {name}") == [qualified]


def test_every_image_of_the_stack_has_a_stand_in() -> None:
    # Record what would be built instead of building it.
    built = in_script(
        'build() { qualify "$1"; }; context() { echo /nonexistent; }; '
        "require_artifact() { :; }; kafka_libs() { :; }; cp() { :; }; rm() { :; }; "
        "build_stand_ins"
    )
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    images = {
        service["image"]
        for service in compose["services"].values()
        if "build" not in service and "image" in service
    }
    dockerfile_bases = {
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    }
    wanted = {in_script(f"qualify {image}")[0] for image in images | dockerfile_bases}
    assert wanted <= set(built), wanted - set(built)
    stand_ins = {path.name for path in (ROOT / "scripts" / "compose" / "stand-ins").iterdir()}
    assert all(
        (ROOT / "scripts" / "compose" / "stand-ins" / s / "Containerfile").exists()
        for s in stand_ins
    )


def load_test_verdict(before: str, after: str) -> subprocess.CompletedProcess[str]:
    """``unchanged_by_load_test`` on two listings of the stack's containers."""
    return subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; unchanged_by_load_test "$1" "$2"', "-", before, after],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


BEFORE = (
    "api fanout-api-1 aaa 2026-12-06 14:05:23 +0000 UTC\n"
    "postgres fanout-postgres-1 bbb 2026-12-06 14:04:46 +0000 UTC"
)


def test_a_load_test_that_left_the_stack_alone_passes() -> None:
    verdict = load_test_verdict(BEFORE, BEFORE)

    assert verdict.returncode == 0, verdict.stderr
    assert "left the stack's 2 containers as they were" in verdict.stderr


@pytest.mark.parametrize(
    "after",
    [
        BEFORE.replace("bbb", "ccc"),  # recreated
        BEFORE.replace("14:04:46", "14:09:10"),  # restarted
        BEFORE.splitlines()[0],  # removed
    ],
    ids=["recreated", "restarted", "removed"],
)
def test_a_container_recreated_restarted_or_removed_fails_the_check(after: str) -> None:
    verdict = load_test_verdict(BEFORE, after)

    assert verdict.returncode == 1
    assert "< postgres fanout-postgres-1 bbb" in verdict.stderr
    assert "fanout-api-1" not in verdict.stderr


def test_no_container_before_the_load_test_fails_the_check() -> None:
    assert load_test_verdict("", "").returncode == 1


COMPOSE_V5 = ROOT / "scripts" / "compose-v5.sh"


def compose_v5_without_go(services: Path) -> subprocess.CompletedProcess[str]:
    """scripts/compose-v5.sh with ``services`` as FANOUT_SERVICES_DIR and no Go on the PATH."""
    tools = services / "tools"
    tools.mkdir()
    dirname = shutil.which("dirname")
    assert dirname is not None
    (tools / "dirname").symlink_to(dirname)
    return subprocess.run(
        ["/bin/bash", str(COMPOSE_V5)],
        env={"FANOUT_SERVICES_DIR": str(services), "PATH": str(tools)},
        capture_output=True,
        text=True,
    )


def test_compose_v5_reuses_the_binary_it_built(tmp_path: Path) -> None:
    binary = tmp_path / "bin" / "docker-compose-v5.6.0"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)

    result = compose_v5_without_go(tmp_path)

    assert (result.returncode, result.stdout) == (0, f"{binary}\n"), result.stderr


def test_compose_v5_without_go_says_what_is_needed(tmp_path: Path) -> None:
    result = compose_v5_without_go(tmp_path)

    assert result.returncode == 1
    assert "Go is needed to build Docker Compose" in result.stderr
    assert not (tmp_path / "bin" / "docker-compose-v5.6.0").exists()
