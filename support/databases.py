"""Databases on the real PostgreSQL servers."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def database_url(server: str, name: str) -> str:
    """The URL of database ``name`` on the server at ``server``."""
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
