"""``fanout config``: the settings in effect, secrets masked."""

from __future__ import annotations

import json

import typer

from gateway.cli.app import app, out, run, settings_of
from gateway.configuration.settings import Settings


@app.command("config")
def show_config(context: typer.Context) -> None:
    """Print the effective configuration (file plus environment), passwords redacted."""

    async def work() -> Settings:
        return settings_of(context)

    settings = run(work)
    # str() of a SecretUrl is the URL with its password redacted.
    out.print_json(json.dumps(settings.model_dump(), default=str))
