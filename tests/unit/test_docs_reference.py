"""The documentation site's reference pages are generated from the code: every command, every
configuration key and every HTTP operation is in them, with its description, and one without
a description is reported (which fails the site's build); the site builds with --strict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from docsite import api, cli, configuration, hooks
from gateway.cli import app
from gateway.configuration.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def command_paths(command: Any, path: str) -> list[str]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, f"{path} {name}")
    return found


def test_every_command_and_option_is_in_the_cli_reference_with_its_help() -> None:
    page = cli.render(app)
    paths = command_paths(typer.main.get_command(app), "fanout")
    assert len(paths) > 20
    for path in paths:
        assert f"`{path}`" in page, path
    assert "`--batch-size`" in page and "Orders per write." in page
    assert cli.undocumented(app) == []


def test_a_command_or_option_without_help_is_reported() -> None:
    bare = typer.Typer(help="An application with gaps in its help.")

    @bare.command()
    def documented(flag: bool = typer.Option(False, "--flag")) -> None:
        """Has help; its option has none."""

    @bare.command()
    def silent() -> None:
        pass

    assert cli.undocumented(bare) == ["fanout documented --flag", "fanout silent"]


def leaf_keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_configuration_key_is_in_the_reference_with_its_meaning() -> None:
    page = configuration.render(Settings)
    for key in leaf_keys(Settings, ""):
        if key != "sinks":
            assert f"`{key}`" in page, key
    for kind in ("memory", "mongodb", "redis", "elasticsearch", "influxdb", "kafka"):
        assert f"### `sinks.<name> (type: {kind})`" in page
    assert "`sinks.<name>.wait_for_replicas`" in page
    assert "`postgres.shards.<shard>.weight`" in page
    assert "`FANOUT_POSTGRES_POOL_MAX_SIZE`" in page
    assert configuration.undocumented(Settings) == []


def test_a_key_or_section_without_a_docstring_is_reported() -> None:
    class Part(BaseModel):
        """A documented section."""

        told: int = 1
        """What it means."""
        untold: int = 2

    class Whole(BaseModel):
        part: Part = Part()

    assert configuration.undocumented(Whole) == ["part.untold"]


def test_the_reference_names_types_and_defaults_as_a_reader_writes_them() -> None:
    rows = {k.path: k for s in configuration.sections(Settings) for k in s.keys}
    assert rows["postgres.url"].default == "required"
    assert rows["postgres.url"].type == "secret URL"
    assert rows["pricing.free_shipping_threshold"].type == "decimal | null"
    assert rows["relay.start_from"].type == '"beginning" | "now"'
    assert rows["relay.start_from"].default == '"beginning"'
    assert rows["events.retention_days"].default == "null"


def test_every_http_operation_is_in_the_api_reference_with_its_statuses() -> None:
    document = api.openapi_document()
    page = api.render(document)
    operations = api.operations(document)
    assert ("POST", "/webhooks/payments") in {(m, p) for m, p, _ in operations}
    for method, path, operation in operations:
        section = page.split(f"#### `{method} {path}`", 1)[1].split("####", 1)[0]
        for status in operation["responses"]:
            assert f"| `{status}` |" in section, (method, path, status)
    assert api.undocumented(document) == []


def test_an_operation_without_a_description_is_reported() -> None:
    document: dict[str, Any] = {
        "paths": {
            "/things": {"get": {"responses": {}, "parameters": [{"name": "q", "in": "query"}]}}
        }
    }
    assert api.undocumented(document) == ["GET /things", "GET /things q"]


def test_every_benchmark_chart_is_shown_on_a_benchmarks_page() -> None:
    pages = "".join(p.read_text() for p in (ROOT / "docs" / "benchmarks").glob("*.md"))
    charts = hooks.chart_files()
    assert charts
    for chart in charts:
        assert f"(charts/{chart.name})" in pages, chart.name


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strictly_with_the_generated_reference(tmp_path: Path) -> None:
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "fanout shards reconcile" in cli_page
    assert "<!-- generated" not in cli_page
    assert (tmp_path / "site" / "reference" / "openapi.json").is_file()
    assert (tmp_path / "site" / "benchmarks" / "charts" / "chaos.png").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](missing.md#nowhere).\n")
    config = tmp_path / "mkdocs.yml"
    strict_settings = (ROOT / "mkdocs.yml").read_text().split("\nmarkdown_extensions:")[0]
    config.write_text(
        strict_settings.replace("  - docsite/hooks.py", f"  - {ROOT / 'docsite' / 'hooks.py'}")
        + f"\ndocs_dir: {docs}\n"
    )
    result = build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stderr
