""".ci/run: every stage runs whatever failed before it, the run ends with one line per stage
(passed or failed, and its time) and fails when any stage failed; at the end it stops exactly
the servers it started."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "run"


def in_script(command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a shell that sourced the script."""
    return subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; {command}'], capture_output=True, text=True, cwd=ROOT
    )


def test_every_stage_runs_and_the_run_ends_with_one_line_per_stage() -> None:
    result = in_script(
        "stage ruff false; stage mypy true; stage pytest bash -c 'exit 5'; "
        "stage compose echo compose ok; summary"
    )

    assert result.returncode == 1
    assert "compose ok" in result.stdout
    lines = result.stderr.splitlines()
    assert [re.sub(r"\d+ s$", "N s", line) for line in lines[-4:]] == [
        "ci: ruff      failed in N s",
        "ci: mypy      passed in N s",
        "ci: pytest    failed in N s",
        "ci: compose   passed in N s",
    ]


def test_a_run_whose_stages_all_pass_passes() -> None:
    result = in_script("stage ruff true; stage mypy true; summary")

    assert result.returncode == 0
    assert result.stderr.splitlines()[-2:] == [
        "ci: ruff      passed in 0 s",
        "ci: mypy      passed in 0 s",
    ]


def test_pytest_collecting_no_tests_is_a_failure() -> None:
    result = in_script("pytest_stage() { return 5; }; stage pytest run_pytest; summary")

    assert result.returncode == 1
    assert "ci: pytest    failed" in result.stderr
    assert "pytest collected no tests" in result.stderr


def test_the_servers_this_run_started_are_the_ones_it_stops(tmp_path: Path) -> None:
    started = tmp_path / "started"
    calls = tmp_path / "calls"
    started.write_text("postgres\nkafka\n")
    stub = f'services_script() {{ echo "$*" >>"{calls}"; }}'

    in_script(f'{stub}; stop_started "{started}"').check_returncode()
    assert calls.read_text().splitlines() == ["down postgres kafka"]

    calls.unlink()
    started.write_text("")
    in_script(f'{stub}; stop_started "{started}"').check_returncode()
    assert not calls.exists()
