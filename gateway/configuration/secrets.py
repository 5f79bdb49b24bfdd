"""Keeping passwords out of output: redacted URLs, DSNs and log lines, and a secret URL type
for settings."""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import SecretStr

REDACTED = "***"

# A URL's password: what follows the user name up to the last "@" of the authority (a
# password holding an unescaped "@" is taken whole, as urllib and libpq take it).
_USERINFO_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^/?#\s]*)@", re.IGNORECASE
)
# A query parameter or a libpq keyword whose value is a secret: passwords (libpq's
# password and sslpassword, InfluxDB 1.x's p), tokens, keys and secrets.
_SECRET_KEY = r"(?:[a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key)[a-z0-9_.-]*|p)"
_QUERY_PARAMETER = re.compile(rf"(?P<head>[?&;]{_SECRET_KEY}=)(?P<secret>[^&#\s]*)", re.IGNORECASE)
_KEYWORD_VALUE = re.compile(
    rf"(?P<head>(?<![\w.?&;-]){_SECRET_KEY}\s*=\s*)"
    r"""(?P<secret>'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|\S*)""",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    return match["head"] + REDACTED + ("@" if match.re is _USERINFO_PASSWORD else "")


def redact_url(text: str) -> str:
    """``text`` with every secret a URL or a DSN in it carries replaced by ``***``.

    ``text`` is a URL, a libpq keyword/value DSN, or any message holding them (an exception's,
    a log line). Masked: the password of ``scheme://user:password@host`` (multi-host and IPv6
    authorities too), secret query parameters (``password``, ``sslpassword``, ``token``,
    ``api_key``, InfluxDB's ``p``, ...) and libpq's ``password=`` / ``sslpassword=`` keywords,
    quoted or not. Schemes, users, hosts, ports and databases stay readable.
    """
    text = _USERINFO_PASSWORD.sub(_mask, text)
    text = _QUERY_PARAMETER.sub(_mask, text)
    return _KEYWORD_VALUE.sub(_mask, text)


def redact_values(value: Any) -> Any:
    """``value`` (JSON-ready: a report, a response body) with every string in it passed
    through :func:`redact_url`."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(item) for item in value]
    return value


class RedactingFormatter(logging.Formatter):
    """A log formatter whose lines (message, arguments and traceback) pass through
    :func:`redact_url`: a client library's message can hold the URL it was given."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, secrets masked."""
        return redact_url(super().format(record))


class SecretUrl(SecretStr):
    """A URL that may hold a password: printed with the password redacted.

    ``get_secret_value()`` returns the full URL for the client library that needs it.
    """

    def _display(self) -> str:
        return redact_url(self.get_secret_value())

    def __str__(self) -> str:
        return self._display()
