"""What a release carries: one version (pyproject.toml's) that ``fanout --version`` reports,
a wheel whose metadata names its license, classifiers and URLs, the license text itself, and a
changelog."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_fanout_version_prints_the_version_pyproject_declares() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0, result.output
    assert result.output == f"fanout {PROJECT['version']}\n"
    assert metadata.version(PROJECT["name"]) == PROJECT["version"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built by its build backend."""
    directory = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(directory),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = directory.glob("*.whl")
    return built


def dist_info_file(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [p for p in archive.namelist() if p.endswith(f".dist-info/{name}")]
        return archive.read(path).decode()


@pytest.fixture(scope="module")
def wheel_metadata(wheel: Path) -> Message:
    return Parser().parsestr(dist_info_file(wheel, "METADATA"))


def test_the_wheel_names_its_version_and_license(wheel_metadata: Message) -> None:
    assert wheel_metadata["Name"] == "fanout-gateway"
    assert wheel_metadata["Version"] == PROJECT["version"]
    assert wheel_metadata["License-Expression"] == "Apache-2.0"
    assert wheel_metadata.get_all("License-File") == ["LICENSE"]


def test_the_wheel_carries_the_license_text(wheel: Path) -> None:
    text = dist_info_file(wheel, "licenses/LICENSE")

    assert text == (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]


def test_the_wheel_has_classifiers_urls_and_its_readme(wheel_metadata: Message) -> None:
    classifiers = wheel_metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert "Typing :: Typed" in classifiers
    urls = dict(entry.split(", ", 1) for entry in wheel_metadata.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    assert urls["Changelog"].endswith("/CHANGELOG.md")
    assert wheel_metadata["Description-Content-Type"] == "text/markdown"
    assert wheel_metadata.get_payload().startswith("# fanout-gateway")  # type: ignore[union-attr]
    assert wheel_metadata["Requires-Python"] == ">=3.11"


def test_the_packages_say_they_are_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        assert {"gateway/py.typed", "adapters/py.typed"} <= set(archive.namelist())


def test_the_changelog_keeps_an_unreleased_section_and_names_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()

    assert changelog.startswith("# Changelog\n")
    assert "\n## [Unreleased]\n" in changelog
    assert f"`{PROJECT['version']}`" in changelog


def test_the_wheel_ships_the_product_alone(wheel: Path) -> None:
    """The gateway and the sink library, not the tests, the benchmarks, the simulation or the
    helpers they share."""
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {
        "gateway",
        "adapters",
    }
