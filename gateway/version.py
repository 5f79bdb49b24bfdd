"""The gateway's version: the installed distribution's, which pyproject.toml declares."""

from __future__ import annotations

from functools import cache
from importlib import metadata

DISTRIBUTION = "fanout-gateway"


@cache
def version() -> str:
    """The version of the installed ``fanout-gateway`` distribution."""
    return metadata.version(DISTRIBUTION)
