"""Building the configured sinks."""

from __future__ import annotations

from adapters.base import Sink
from adapters.memory import MemorySink
from gateway.config import SinkSettings


def build_sink(name: str, settings: SinkSettings) -> Sink:
    """The sink described by one entry of the ``sinks`` configuration section."""
    return MemorySink(
        name, journal_path=settings.journal_path, delay_seconds=settings.delay_seconds
    )
