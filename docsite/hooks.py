"""The MkDocs hook that writes the generated reference into the site at build time (named in
``mkdocs.yml``): a page holding ``<!-- generated: NAME -->`` gets the reference NAME there, the
OpenAPI document is offered as ``reference/openapi.json``, and the benchmark charts are served
from ``bench/results/`` where the benchmarks write them. A command, setting or operation
without a description fails the build."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from docsite import api, cli, configuration
from gateway.cli import app
from gateway.configuration.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "bench" / "results"
CHARTS_URI = "benchmarks/charts"
OPENAPI_URI = "reference/openapi.json"
MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def generated_references() -> dict[str, Callable[[], str]]:
    """Each reference a page can ask for by name, and how to write it."""
    return {
        "cli": lambda: cli.render(app),
        "configuration": lambda: configuration.render(Settings),
        "http-api": lambda: api.render(api.openapi_document()),
    }


def undocumented() -> list[str]:
    """Every command, setting and operation the reference could not explain."""
    return (
        cli.undocumented(app)
        + configuration.undocumented(Settings)
        + api.undocumented(api.openapi_document())
    )


def chart_files() -> list[Path]:
    """The benchmark charts, as the benchmarks wrote them."""
    return sorted(CHARTS.glob("*.png"))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Adds the OpenAPI document and the benchmark charts to the site's files."""
    missing = undocumented()
    if missing:
        raise PluginError(
            "without a description, so absent from the reference: " + ", ".join(missing)
        )
    document = api.document_json(api.openapi_document())
    files.append(File.generated(config, OPENAPI_URI, content=document))
    for chart in chart_files():
        files.append(File.generated(config, f"{CHARTS_URI}/{chart.name}", abs_src_path=str(chart)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replaces each ``<!-- generated: NAME -->`` of a page with the reference NAME."""
    references = generated_references()

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in references:
            known = ", ".join(sorted(references))
            raise PluginError(
                f"{page.file.src_uri}: no generated reference {name!r} (known: {known})"
            )
        return references[name]()

    return MARKER.sub(expand, markdown)
