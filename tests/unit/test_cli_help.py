"""Every command of ``fanout`` has --help; the module runs as ``python -m gateway``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gateway.cli.app import app

COMMANDS = [
    [],
    ["migrate"],
    ["migrate", "status"],
    ["migrate", "down"],
    ["config"],
    ["demo"],
    ["relay"],
    ["status"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["events"],
    ["verify"],
    ["backfill"],
    ["rewind"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fanout")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True, check=True
    )
    assert "migrate" in result.stdout


def test_a_config_error_exits_2_naming_key_and_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.yaml"
    path.write_text("postgres:\n  url: postgresql://u:hunter2@h/db\n  colour: blue\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(path), "config"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "postgres.colour: unknown key" in result.stderr
    assert str(path) in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_config_prints_the_url_with_the_password_redacted(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "ok.yaml"
    path.write_text("postgres:\n  url: postgresql://u:hunter2@h/db\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(path), "config"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "postgresql://u:***@h/db" in result.stdout
    assert "hunter2" not in result.stdout
