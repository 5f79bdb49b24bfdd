"""The ``fanout`` command line: ``app`` holds the root and what commands share; each other
module is named after the command (or group of commands) it registers on it. Commands parse
arguments and print; ``render`` draws their tables."""

from gateway.cli import (
    asyncapi,
    backfill,
    config,
    demo,
    dlq,
    doctor,
    events,
    loadtest,
    migrate,
    relay,
    report,
    rewind,
    serve,
    shards,
    sinks,
    status,
    verify,
)
from gateway.cli.app import app, main

__all__ = [
    "app",
    "asyncapi",
    "backfill",
    "config",
    "demo",
    "dlq",
    "doctor",
    "events",
    "loadtest",
    "main",
    "migrate",
    "relay",
    "report",
    "rewind",
    "serve",
    "shards",
    "sinks",
    "status",
    "verify",
]
