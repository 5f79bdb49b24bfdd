"""The ``fanout`` command line: ``app`` holds the root and what commands share; each other
module registers a group of commands on it. Commands parse arguments and print; ``render``
draws their tables."""

from gateway.cli import checks, history, loadtest, rebuild, schema, service, shards, sinks
from gateway.cli.app import app, main

__all__ = [
    "app",
    "checks",
    "history",
    "loadtest",
    "main",
    "rebuild",
    "schema",
    "service",
    "shards",
    "sinks",
]
