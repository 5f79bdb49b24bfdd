"""Kafka's ``kafka://host:port[,host:port…]`` URLs (no client import: the settings use it)."""

from __future__ import annotations


def bootstrap_servers(url: str) -> list[str]:
    """The ``host:port`` list of a ``kafka://host:port[,host:port…]`` URL."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme != "kafka":
        raise ValueError(f"a Kafka URL starts with kafka://, not {url!r}")
    servers = [server.strip() for server in rest.rstrip("/").split(",") if server.strip()]
    if not servers:
        raise ValueError(f"the Kafka URL {url!r} names no broker")
    return servers
