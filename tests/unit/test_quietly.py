"""scripts/quietly.sh, which the install scripts run their tools through: a tool's output goes
to a log file, and only a failure shows its last lines, naming the file."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "quietly.sh"


def quietly(log: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; quietly "{log}" bash -c \'{command}\''],
        capture_output=True,
        text=True,
    )


def test_a_tool_that_succeeds_says_nothing_and_its_output_is_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    result = quietly(log, "echo go: downloading github.com/x/y v1.0.0; echo debconf: notice >&2")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert log.read_text().splitlines() == [
        "go: downloading github.com/x/y v1.0.0",
        "debconf: notice",
    ]


def test_a_tool_that_fails_shows_the_logs_last_lines_and_its_status(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    result = quietly(log, "seq 1 40; echo no such module >&2; exit 3")

    assert result.returncode == 3
    assert result.stdout == ""
    said = result.stderr.splitlines()
    assert said[0] == f"failed (exit 3); the last lines of {log}:"
    assert said[1:] == [f"    {n}" for n in range(17, 41)] + ["    no such module"]
