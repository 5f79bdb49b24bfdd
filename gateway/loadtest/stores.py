"""The stores a load test writes and reads: the configured sinks, or the dual write's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from functools import partial

from adapters.base import Sink
from gateway.configuration.settings import Settings, SinkSettings
from gateway.relay import sinks

DUAL_WRITE_SUFFIX = "_dualwrite"


def enabled_sinks(settings: Settings, suffix: str = "") -> dict[str, Sink]:
    """A client of every enabled sink; with ``suffix``, writing under names of its own."""
    return sinks.enabled_sinks(settings, partial(namespaced, suffix=suffix) if suffix else None)


def namespaced(sink: SinkSettings, suffix: str) -> SinkSettings:
    """The same store, written under names of the dual-write run's own."""
    match sink.type:
        case "mongodb":
            return sink.model_copy(update={"collection": sink.collection + suffix})
        case "redis":
            return sink.model_copy(update={"key_prefix": suffix.strip("_") + ":" + sink.key_prefix})
        case "elasticsearch":
            return sink.model_copy(update={"index": sink.index + suffix})
        case "influxdb":
            return sink.model_copy(update={"measurement": sink.measurement + suffix})
    return sink


@contextlib.asynccontextmanager
async def closing(sinks: Mapping[str, Sink]) -> AsyncIterator[None]:
    """Close every sink on the way out, whatever happens."""
    try:
        yield
    finally:
        for sink in sinks.values():
            with contextlib.suppress(Exception):
                await sink.close()
