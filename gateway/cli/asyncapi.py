"""``fanout asyncapi``: the AsyncAPI document of the events on Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.app import app, err, run, settings_of
from gateway.contract.asyncapi import asyncapi_document, kafka_targets
from gateway.version import version


@app.command("asyncapi")
def asyncapi(
    context: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the document to this file instead of standard output.",
            dir_okay=False,
            writable=True,
        ),
    ] = None,
    sink: Annotated[
        str | None,
        typer.Option(
            help="The Kafka sink to describe (default: every enabled one; with none "
            "configured, the sink's default topics and no servers).",
        ),
    ] = None,
) -> None:
    """Print the AsyncAPI 3.0 document (JSON) of the events the Kafka sink publishes: a
    channel per topic, a message per event type with its payload, key and headers."""

    async def work() -> dict[str, Any]:
        return asyncapi_document(kafka_targets(settings_of(context), sink), version())

    text = json.dumps(run(work), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        err.print(f"error: --output: cannot write {output}: {error.strerror}", highlight=False)
        raise typer.Exit(1) from None
    err.print(f"wrote {output}", highlight=False)
