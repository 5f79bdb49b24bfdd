"""Keeping passwords out of output: redacted URLs and a secret URL type for settings."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

REDACTED = "***"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (user, host and path kept)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{user}:{REDACTED}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class SecretUrl(SecretStr):
    """A URL that may hold a password: printed with the password redacted.

    ``get_secret_value()`` returns the full URL for the client library that needs it.
    """

    def _display(self) -> str:
        return redact_url(self.get_secret_value())

    def __str__(self) -> str:
        return self._display()
