"""Kafka's ``kafka://host:port[,host:port…]`` URLs (no client import: the settings use it)."""

from __future__ import annotations


def bootstrap_servers(url: str) -> list[str]:
    """The ``host:port`` list of a ``kafka://host:port[,host:port…]`` URL.

    Raises ``ValueError`` (whose message never repeats the URL, which may hold a password) for
    another scheme, no broker, or a user name or password: the producer connects without
    authentication, and a client library would log the broker address that carries them.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme != "kafka":
        raise ValueError("a Kafka URL starts with kafka://")
    if "@" in rest:
        raise ValueError(
            "a Kafka URL holds no user name or password (the sink connects without authentication)"
        )
    servers = [server.strip() for server in rest.rstrip("/").split(",") if server.strip()]
    if not servers:
        raise ValueError("the Kafka URL names no broker")
    return servers
