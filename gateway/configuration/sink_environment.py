"""``FANOUT_SINKS_<NAME>_<KEY>``: a sink's settings from the environment.

The settings' environment source splits a variable's name once after the section
(``FANOUT_SINKS`` + ``REDIS_URL``), which cannot tell a sink's name from its key: a sink may
be named ``order_cache`` and have a ``key_prefix``. So a sink's variables are matched here
against the names of the sinks the file configures, the longest name first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SINKS_PREFIX = "FANOUT_SINKS_"


def variable_stem(sink: str) -> str:
    """The part of a variable's name that stands for ``sink`` (``order-cache``:
    ``ORDER_CACHE``)."""
    return sink.upper().replace("-", "_")


def sink_variable(sink: str, key: str) -> str:
    """The variable that sets ``key`` of ``sink``."""
    return f"{SINKS_PREFIX}{variable_stem(sink)}_{key.upper()}"


def sink_overrides(
    sinks: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """The keys each of ``sinks`` takes from ``environ``: ``{sink: {key: value}}``."""
    overrides: dict[str, dict[str, str]] = {}
    for variable, value in environ.items():
        match = _sink_and_key(variable, sinks)
        if match is not None:
            name, key = match
            overrides.setdefault(name, {})[key] = value
    return overrides


def unmatched_variables(sinks: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """``FANOUT_SINKS_*`` variables of ``environ`` that name none of ``sinks`` (a typo, or a
    sink the file does not configure)."""
    return sorted(
        variable
        for variable in environ
        if variable.startswith(SINKS_PREFIX) and _sink_and_key(variable, sinks) is None
    )


def _sink_and_key(variable: str, sinks: Mapping[str, Any]) -> tuple[str, str] | None:
    """The sink (the longest name that fits) and key a ``FANOUT_SINKS_*`` variable sets."""
    if not variable.startswith(SINKS_PREFIX):
        return None
    rest = variable.removeprefix(SINKS_PREFIX)
    for name in sorted(sinks, key=lambda n: -len(variable_stem(n))):
        stem = variable_stem(name) + "_"
        if rest.startswith(stem) and len(rest) > len(stem):
            return name, rest.removeprefix(stem).lower()
    return None


def with_overrides(sinks: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``sinks`` (the file's section) with the environment's keys laid over each entry."""
    merged = dict(sinks)
    for name, keys in sink_overrides(sinks, environ).items():
        entry = merged[name]
        merged[name] = {**entry, **keys} if isinstance(entry, Mapping) else entry
    return merged
