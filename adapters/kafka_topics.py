"""Which topic an aggregate type's events go to: the Kafka sink's naming rule, shared with the
events' published contract so that the two cannot disagree."""

from __future__ import annotations

from collections.abc import Mapping


def topic_for(
    aggregate_type: str, topic_prefix: str, topics: Mapping[str, str | None]
) -> str | None:
    """The topic of ``aggregate_type``'s events: its entry in ``topics`` (``None``: not
    published), else ``<topic_prefix><aggregate_type>``."""
    if aggregate_type in topics:
        return topics[aggregate_type]
    return f"{topic_prefix}{aggregate_type}"
