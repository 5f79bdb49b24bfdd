"""Keeping passwords out of output: redacted URLs, DSNs and log lines, and a secret URL type
for settings."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from pydantic import SecretStr

REDACTED = "***"

# A URL's password: what follows ``scheme://user:`` up to the last "@" before white space,
# so that a password holding an unescaped "@", "/", "?" or "#" is taken whole (clients differ
# in where they end it; masking up to the last "@" hides it from all of them).
_USERINFO_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>\S*)@", re.IGNORECASE
)
# The same without a scheme, as a client library prints a broker or a server it was given
# (``user:password@host:port``): a name starting a word or a quoted text, a colon, then no
# white space nor quote up to an "@" before a host. An e-mail address has no colon and stays
# readable; ``mailto:name@host`` is masked too, which is safe.
_BARE_USERINFO_PASSWORD = re.compile(
    r"""(?P<head>(?:(?<=[\s'"(\[{<,=])|^)[\w.~%!$&*+;=-]*:)(?!//)(?P<secret>[^\s'"]*)@"""
    r"(?=[\w\[])"
)
# A query parameter or a libpq keyword whose value is a secret: passwords (libpq's
# password and sslpassword, InfluxDB 1.x's p), tokens, keys and secrets.
_SECRET_WORD = r"[a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key)[a-z0-9_.-]*"
_SECRET_KEY = rf"(?:{_SECRET_WORD}|p)"
_SECRET_NAME = re.compile(_SECRET_KEY, re.IGNORECASE)
# Any query parameter: its name is percent-decoded before it is judged, as the clients decode
# it (``pass%77ord`` is ``password`` to asyncpg).
_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<name>[^=&#\s]+)=)(?P<secret>[^&#\s]*)")
_KEYWORD_VALUE = re.compile(
    rf"(?P<head>(?<![\w.?&;-]){_SECRET_KEY}\s*=\s*)"
    r"""(?P<secret>'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|\S*)""",
    re.IGNORECASE,
)
# In a message, a mapping's secret member as Python or JSON print it (``'password': 'x'``,
# ``"token": "x"``), a labelled one (``password: x``, ``X-API-Key: x``) and an HTTP
# Authorization header's credentials.
_MAPPING_MEMBER = re.compile(
    rf"""(?P<head>(?P<quote>['"]){_SECRET_KEY}(?P=quote)\s*:\s*)"""
    r"""(?P<secret>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,}\s]*)""",
    re.IGNORECASE,
)
_LABELLED_VALUE = re.compile(
    rf"(?P<head>(?<![\w.-]){_SECRET_WORD}\s*:[ \t]*)(?P<secret>[^\s'\",}}]+)", re.IGNORECASE
)
_AUTHORIZATION = re.compile(
    r"(?P<head>\bauthorization['\"]?\s*[:=]\s*['\"]?(?:[a-z-]+ )?)(?P<secret>[^\s'\",}]+)",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    return match["head"] + REDACTED


def _mask_userinfo(match: re.Match[str]) -> str:
    return match["head"] + REDACTED + "@"


def _mask_secret_parameter(match: re.Match[str]) -> str:
    if _SECRET_NAME.fullmatch(unquote_plus(match["name"])):
        return match["head"] + REDACTED
    return match[0]


def _mask_member(match: re.Match[str]) -> str:
    quote = match["secret"][:1] if match["secret"][:1] in {"'", '"'} else ""
    return f"{match['head']}{quote}{REDACTED}{quote}"


def redact_url(text: str) -> str:
    """``text`` with every secret a URL, a DSN or a message quoting them carries replaced by
    ``***``.

    ``text`` is a URL, a libpq keyword/value DSN, or any message holding them (an exception's,
    a log line). Masked: the password of ``scheme://user:password@host`` (multi-host and IPv6
    authorities too, everything up to the last ``@``), of ``user:password@host`` without a
    scheme, secret query parameters (``password``, ``sslpassword``, ``token``, ``api_key``,
    InfluxDB's ``p``, ..., their names percent-decoded) and libpq's ``password=`` /
    ``sslpassword=`` keywords, quoted or not; and, as a message can print a client's options
    or a request's headers, a mapping's secret members (``'password': '…'``, ``"token":
    "…"``), labelled secrets (``password: …``, ``X-API-Key: …``) and Authorization
    credentials. Schemes, users, hosts, ports and databases stay readable.
    """
    text = _USERINFO_PASSWORD.sub(_mask_userinfo, text)
    text = _BARE_USERINFO_PASSWORD.sub(_mask_userinfo, text)
    text = _QUERY_PARAMETER.sub(_mask_secret_parameter, text)
    text = _KEYWORD_VALUE.sub(_mask, text)
    text = _AUTHORIZATION.sub(_mask, text)
    text = _LABELLED_VALUE.sub(_mask, text)
    return _MAPPING_MEMBER.sub(_mask_member, text)


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
